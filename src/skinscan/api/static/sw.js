// The web app's service worker: keeps the page, its scripts, ONNX Runtime Web and the on-device model, so that after
// one visit the page opens and judges photos on the device with the network off. The server writes its version
// (a digest of every file below) into it: a new server's files replace the old ones the next time the page opens.
// Results and uploads are never cached: only the GET requests of the files below are answered from the cache.
"use strict";

const VERSION = "__VERSION__";
const CACHE = `skinscan-app-${VERSION}`;
const FILES = [
  "./", "static/app.js", "static/app.css", "static/device.js", "static/imaging.js", "static/prepare.onnx",
  "static/favicon.svg", "static/icon-192.png", "static/icon-512.png", "manifest.webmanifest",
  "static/vendor/ort/ort.wasm.min.mjs", "static/vendor/ort/ort-wasm-simd-threaded.mjs",
  "device/spec.json", "device/model.onnx", "device/ort-wasm-simd-threaded.wasm",
];
const scope = new URL(self.registration.scope);
const PAGE = new URL("./", scope).href;
const CACHED = new Set(FILES.map((path) => new URL(path, scope).href));

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // the page's address answers JSON to anything that does not ask for HTML (routes.py)
    // revalidated, not refetched: a file the page has just downloaded comes from the HTTP cache with a 304
    await cache.addAll(FILES.map((path) => new Request(new URL(path, scope), { headers: { Accept: "text/html" }, cache: "no-cache" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith("skinscan-app-") && name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.search = ""; // ?device=local is the same page
  const key = request.mode === "navigate" && url.href === PAGE ? PAGE : url.href;
  if (!CACHED.has(key)) return;
  // the device spec follows the server while it is there (a new threshold, a site profile), the cache when not;
  // every other file is the cached copy of this version
  if (key.endsWith("/device/spec.json")) {
    event.respondWith(fetch(request).catch(() => caches.match(key, { cacheName: CACHE })));
    return;
  }
  event.respondWith(caches.match(key, { cacheName: CACHE }).then((hit) => hit || fetch(request)));
});
