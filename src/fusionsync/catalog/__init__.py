"""Pure domain logic of the Fusion catalog: identifiers, digests, local layout. No I/O."""
