// fusionsync web catalog: the little JavaScript the pages need, no build step.
// Writes go through the API (/api/v1/) with an API token the signed-in session asks for
// (POST /session/token, with the page's CSRF token); uploads use the multipart upload API: 5 MiB parts,
// each sent with its SHA-256, completed with the file's digest, so the server verifies every byte.
"use strict";

const PART = 5 * 1024 * 1024;
const enc = encodeURIComponent;

function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function check(response) {
  if (response.ok) return response;
  let text = await response.text();
  try {
    text = JSON.parse(text).message || text;
  } catch (e) {
    // not JSON: the text as it is
  }
  throw new Error(`${response.status}: ${text}`);
}

async function apiHeaders() {
  const response = await check(await fetch("/session/token", {
    method: "POST", headers: {"X-CSRF-Token": csrf()}, credentials: "same-origin",
  }));
  return {Authorization: `Bearer ${(await response.json()).access_token}`};
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

async function sha256(data) {
  if (!window.crypto || !crypto.subtle) {
    throw new Error("uploading from the browser needs HTTPS (or a server on this computer)");
  }
  return crypto.subtle.digest("SHA-256", data);
}

function say(form, text, kind) {
  const message = form.querySelector(".message");
  message.textContent = text;
  message.className = `message ${kind || ""}`;
  return message;
}

async function upload(form) {
  const file = form.elements.file.files[0];
  const series = form.elements.series.value.trim();
  const extension = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  const format = form.elements.format.value.trim() || extension || "raw";
  const dataset = `/api/v1/catalogs/${enc(form.dataset.catalog)}/datasets/${enc(form.dataset.dataset)}`;
  const headers = await apiHeaders();
  const fusion = await (await check(await fetch(`${dataset}/authorize/token`, {headers}))).json();
  headers["Fusion-Authorization"] = `Bearer ${fusion.access_token}`;
  if (/^[A-Za-z0-9._-]{1,200}$/.test(file.name)) headers["File-Name"] = file.name;
  const target = `${dataset}/datasetseries/${enc(series)}/distributions/${enc(format)}`;
  const started = await check(await fetch(`${target}/operationType/upload`, {method: "POST", headers}));
  const url = `${target}/operations/upload?operationId=${enc((await started.json()).operationId)}`;
  const bar = form.querySelector("progress");
  bar.hidden = false;
  const count = Math.max(1, Math.ceil(file.size / PART));
  const answers = [];
  const digests = new Uint8Array(32 * count);
  for (let i = 0; i < count; i++) {
    const bytes = await file.slice(i * PART, Math.min(file.size, (i + 1) * PART)).arrayBuffer();
    const digest = await sha256(bytes);
    digests.set(new Uint8Array(digest), 32 * i);
    const sent = await check(await fetch(`${url}&partNumber=${i + 1}`, {
      method: "PUT",
      headers: {...headers, Digest: `SHA-256=${base64(digest)}`, "Content-Type": "application/octet-stream"},
      body: bytes,
    }));
    answers.push(await sent.json());
    bar.value = (i + 1) / count;
    say(form, `Sent ${i + 1} of ${count} parts…`);
  }
  // The file's digest: its SHA-256 when it is one part, else the SHA-256 of the parts' SHA-256s.
  const whole = count === 1 ? digests : await sha256(digests);
  await check(await fetch(url, {
    method: "POST",
    headers: {...headers, Digest: `SHA-256=${base64(whole)}`, "Content-Type": "application/json"},
    body: JSON.stringify({parts: answers}),
  }));
  const done = say(form, `Uploaded ${file.name} (${file.size} bytes) as series member ${series}, format ${format}. `, "ok");
  const link = document.createElement("a");
  link.href = `${location.pathname}/series/${enc(series)}`;
  link.textContent = "Show it";
  done.append(link);
}

async function newDataset(form) {
  const identifier = form.elements.identifier.value.trim();
  const body = {};
  for (const field of ["title", "description"]) {
    const value = form.elements[field].value.trim();
    if (value) body[field] = value;
  }
  const headers = {...await apiHeaders(), "Content-Type": "application/json"};
  const url = `/api/v1/catalogs/${enc(form.dataset.catalog)}/datasets/${enc(identifier)}`;
  await check(await fetch(url, {method: "POST", headers, body: JSON.stringify(body)}));
  location.assign(`/catalogs/${enc(form.dataset.catalog)}/datasets/${enc(identifier)}`);
}

function handle(selector, action) {
  for (const form of document.querySelectorAll(selector)) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      say(form, "Working…");
      try {
        await action(form);
      } catch (error) {
        say(form, `Failed: ${error.message}`, "bad");
      } finally {
        button.disabled = false;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  handle("form.js-upload", upload);
  handle("form.js-new-dataset", newDataset);
});
