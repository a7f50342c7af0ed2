// The skinscan web client: picks or drops photos, sends each to POST predict or judges it on this device
// (device.js, the switch or ?device=local), and shows one card per photo saying where it was judged.
// No build step and nothing from elsewhere: it must work offline, from the same server as the API.
"use strict";

(() => {
  const UNREACHABLE = "Cannot reach the skinscan server";
  const PARALLEL = 2; // photos in flight at once; the server runs the model one batch at a time anyway
  const TIMEOUT_MS = 60000;
  const KEY_STORAGE = "skinscan-api-key";
  const WHERE_STORAGE = "skinscan-judge-on"; // "device" or "server", remembered across visits
  const ON_SERVER = "The photo is sent to this server, judged in memory and not stored.";

  const $ = (id) => document.getElementById(id);
  const results = $("results");
  const announcer = $("announcer");
  const template = $("card-template");
  const queue = [];
  let running = 0;
  let apiKey = sessionStorage.getItem(KEY_STORAGE) || "";
  let device = null; // the on-device judge's promise, once asked for (device.js)
  let serverReachable = true;

  // --- server status ---------------------------------------------------------------------------------

  async function checkHealth() {
    const status = $("server-status");
    try {
      const response = await fetch("health", { cache: "no-store" });
      const body = await response.json();
      serverReachable = true;
      if (body.model_loaded) {
        status.dataset.state = "ready";
        status.textContent = "Ready";
        $("model-version").textContent = `Model: ${body.model.id} ${body.model.version} · skinscan ${body.version}`;
        return;
      }
      status.dataset.state = body.status === "failed" ? "down" : "loading";
      status.textContent = body.status === "failed" ? "The model failed to load" : "Loading the model…";
      if (body.status !== "failed") setTimeout(checkHealth, 2000);
    } catch {
      serverReachable = false;
      status.dataset.state = onDevice() ? "offline" : "down";
      status.textContent = onDevice() ? "Offline: photos are judged on this device" : UNREACHABLE;
      setTimeout(checkHealth, 5000);
    }
  }

  // --- where photos are judged --------------------------------------------------------------------------

  function onDevice() {
    return $("device-toggle").checked;
  }

  function wireWhere() {
    const toggle = $("device-toggle");
    const asked = new URLSearchParams(location.search).get("device");
    // ?device=local (or =server) decides for this visit; the switch, when used, is remembered
    toggle.checked = asked ? asked === "local" : localStorage.getItem(WHERE_STORAGE) === "device";
    toggle.addEventListener("change", () => {
      localStorage.setItem(WHERE_STORAGE, toggle.checked ? "device" : "server");
      showWhere();
    });
    showWhere();
    // the model first, then the offline copy: the service worker then finds it in the browser's HTTP cache
    // instead of downloading it a second time
    (onDevice() ? loadJudge().catch(() => {}) : Promise.resolve()).then(keepOffline);
  }

  function keepOffline() {
    // the offline app: page, scripts, model and WebAssembly kept by the service worker (sw.js); it needs a secure
    // context (https, or this machine's own address), without which the page still works online
    if ("serviceWorker" in navigator && window.isSecureContext) {
      navigator.serviceWorker.register("sw.js").catch((error) => console.warn("no offline copy:", error.message));
    }
  }

  function showWhere() {
    const line = $("device-status");
    if (!onDevice()) {
      line.dataset.state = "server";
      line.textContent = ON_SERVER;
      if (!serverReachable) checkHealth();
      return;
    }
    line.dataset.state = "loading";
    line.textContent = "Loading the model onto this device…";
    loadJudge().then(
      (judge) => {
        if (!onDevice()) return;
        line.dataset.state = "ready";
        line.textContent = `Photos are judged on this device and never leave it (model ${judge.spec.model.id}, ` +
          `${(judge.spec.model.bytes / 1e6).toFixed(1)} MB, kept for offline use).`;
      },
      (error) => {
        if (!onDevice()) return;
        line.dataset.state = "failed";
        line.textContent = `Cannot judge on this device: ${error.message}. Switch it off to have the server judge photos.`;
      },
    );
  }

  function loadJudge() {
    if (!device) {
      device = import("./device.js").then((module) => module.loadDevice());
      device.catch(() => { device = null; }); // a later try may succeed (the server back, say)
    }
    return device;
  }

  // --- choosing files ------------------------------------------------------------------------------------

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    if (!files.length) return;
    $("empty").hidden = true;
    $("clear-button").hidden = false;
    for (const file of files) {
      const card = createCard(file);
      results.prepend(card.element);
      queue.push(card);
    }
    announce(files.length === 1 ? `Checking ${files[0].name}…` : `Checking ${files.length} photos…`);
    pump();
  }

  function wirePicking() {
    const fileInput = $("file-input");
    const cameraInput = $("camera-input");
    $("choose-button").addEventListener("click", () => fileInput.click());
    $("camera-button").addEventListener("click", () => cameraInput.click());
    for (const input of [fileInput, cameraInput]) {
      input.addEventListener("change", () => {
        addFiles(input.files);
        input.value = ""; // choosing the same photo again must fire change again
      });
    }
    const zone = $("drop-zone");
    let depth = 0; // dragenter/leave fire for every child element; count to know when the drag really left
    zone.addEventListener("dragenter", (event) => {
      event.preventDefault();
      depth += 1;
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove("dragging");
    });
    zone.addEventListener("dragover", (event) => event.preventDefault());
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("dragging");
      addFiles(event.dataTransfer && event.dataTransfer.files);
    });
    // a photo dropped beside the zone must not make the browser navigate away to it
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    document.addEventListener("paste", (event) => addFiles(event.clipboardData && event.clipboardData.files));
    $("clear-button").addEventListener("click", () => {
      for (const img of results.querySelectorAll("img.preview")) if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
      results.replaceChildren();
      queue.length = 0;
      $("empty").hidden = false;
      $("clear-button").hidden = true;
      announce("Results cleared");
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      apiKey = $("key-input").value.trim();
      sessionStorage.setItem(KEY_STORAGE, apiKey);
      $("key-form").hidden = true;
      for (const element of results.querySelectorAll('.card[data-status="unauthorized"]')) element.retry();
    });
  }

  // --- one card per photo ----------------------------------------------------------------------------------

  function createCard(file) {
    const element = template.content.firstElementChild.cloneNode(true);
    const part = (selector) => element.querySelector(selector);
    const card = { file, element, part };
    part(".file-name").textContent = file.name || "photo";
    const preview = part(".preview");
    preview.alt = `Your photo ${file.name || ""}`.trim();
    preview.addEventListener("error", () => {
      // HEIC, TIFF and DICOM are judged by the server but most browsers cannot show them
      preview.hidden = true;
      part(".no-preview").hidden = false;
    });
    preview.src = URL.createObjectURL(file);
    element.retry = () => {
      setStatus(card, "pending");
      queue.push(card);
      pump();
    };
    part(".retry").addEventListener("click", element.retry);
    part(".heatmap-toggle").addEventListener("change", (event) => {
      part(".overlay").hidden = !event.target.checked;
      part(".heatmap-legend").hidden = !event.target.checked || !part(".legend-text").textContent;
    });
    return card;
  }

  function setStatus(card, status) {
    card.element.dataset.status = status;
    card.element.setAttribute("aria-busy", status === "pending" ? "true" : "false");
    card.part(".pending-text").hidden = status !== "pending";
    card.part(".verdict").hidden = status !== "ok";
    card.part(".problem").hidden = status === "pending" || status === "ok";
  }

  function showVerdict(card, result) {
    const part = card.part;
    const percent = (value) => `${Math.round(value * 100)}%`;
    setStatus(card, "ok");
    card.element.style.setProperty("--severity", result.colour || "#555");
    const malignant = result.probability >= result.threshold;
    // the headline is what to do; a server too old to send one gets its class name shown instead
    part(".badge").textContent = result.verdict || capitalise(result.label);
    part(".badge").dataset.label = malignant ? "malignant" : "benign";
    part(".badge").dataset.verdict = result.verdict_code || "";
    part(".severity").textContent = `Severity ${result.severity} of 6 · ${result.severity_name}`;
    part(".probability-text").textContent = `Probability of malignancy: ${percent(result.probability)} ` +
      `(${malignant ? "at or above" : "below"} the threshold of ${percent(result.threshold)})`;
    const bar = part(".bar");
    bar.setAttribute("aria-valuenow", String(Math.round(result.probability * 100)));
    bar.setAttribute("aria-label", `Probability of malignancy ${percent(result.probability)}, threshold ${percent(result.threshold)}`);
    part(".fill").style.setProperty("width", percent(result.probability));
    part(".threshold-mark").style.setProperty("left", percent(result.threshold));
    part(".threshold-text").textContent = `threshold ${percent(result.threshold)}`;
    // keep the label clear of the 0% and 100% at the ends of the scale
    part(".threshold-text").style.setProperty("left", percent(Math.min(0.86, Math.max(0.14, result.threshold))));
    part(".description").textContent = result.description;
    part(".recommendation").textContent = result.recommendation;
    const likely = result.diagnoses || [];
    part(".diagnoses").hidden = likely.length === 0;
    part(".diagnoses").textContent = likely.length === 0 ? "" : "Most likely, as the model sees it (not a diagnosis): " +
      likely.map((d) => `${d.name} ${percent(d.probability)}`).join(", ");
    part(".card-disclaimer").textContent = result.disclaimer;
    const toggle = part(".heatmap-toggle");
    if (result.heatmap_png) {
      const overlay = part(".overlay");
      overlay.src = `data:image/png;base64,${result.heatmap_png}`;
      const legend = result.heatmap_legend || "";
      overlay.alt = legend || "Heatmap of the regions that weighed most in the result";
      overlay.hidden = !toggle.checked;
      part(".legend-text").textContent = legend;
      part(".heatmap-legend").hidden = !toggle.checked || !legend;
      toggle.disabled = false;
    } else {
      toggle.closest(".toggle").hidden = true;
    }
    part(".meta").textContent = modelLine(result);
    announce(`${card.file.name}: ${result.verdict || result.label}, probability of malignancy ${percent(result.probability)}, ` +
      `severity ${result.severity} of 6, ${result.severity_name}.`);
  }

  function showProblem(card, status, title, detail, retry) {
    setStatus(card, status);
    card.element.style.removeProperty("--severity");
    card.part(".problem-title").textContent = title;
    card.part(".problem-detail").textContent = detail || "";
    card.part(".retry").hidden = !retry;
    announce(`${card.file.name}: ${title}. ${detail || ""}`);
  }

  function modelLine(body) {
    const parts = [body.where === "device" ? "Judged on this device" : "Judged on the server"];
    if (body.model) parts.push(`Model ${body.model.id} ${body.model.version}`);
    if (typeof body.latency_ms === "number") parts.push(`${Math.round(body.latency_ms)} ms`);
    return parts.join(" · ");
  }

  // --- talking to the server -----------------------------------------------------------------------------

  function pump() {
    while (running < PARALLEL && queue.length) {
      const card = queue.shift();
      running += 1;
      check(card).finally(() => {
        running -= 1;
        pump();
      });
    }
  }

  async function checkOnDevice(card) {
    card.element.dataset.where = "device";
    let judge;
    try {
      judge = await loadJudge();
    } catch (error) {
      showProblem(card, "error", "Cannot judge on this device", `${capitalise(error.message)}. Nothing was sent.`, true);
      return;
    }
    let body;
    try {
      body = await judge.judge(card.file);
    } catch (error) {
      const readable = error && error.constructor && error.constructor.name === "DeviceImageError";
      showProblem(card, "error", readable ? "This file is not a readable image" : "Cannot judge on this device",
        readable ? error.message : `${error && error.message}. Nothing was sent.`, !readable);
      card.part(".meta").textContent = "Judged on this device";
      return;
    }
    if (body.status === "ok") {
      showVerdict(card, body);
    } else {
      showProblem(card, "rejected", body.verdict, body.reason, false);
      card.part(".meta").textContent = modelLine(body);
    }
  }

  async function check(card) {
    if (onDevice()) return checkOnDevice(card);
    card.element.dataset.where = "server";
    const form = new FormData();
    form.append("file", card.file, card.file.name || "photo");
    const headers = apiKey ? { "X-API-Key": apiKey } : {};
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let response;
    try {
      response = await fetch("predict?heatmap=true", { method: "POST", body: form, headers, signal: abort.signal });
    } catch (error) {
      const timedOut = error && error.name === "AbortError";
      showProblem(card, "error", timedOut ? "The server took too long to answer" : UNREACHABLE,
        timedOut ? "Try again, or with a smaller photo." : "Check that the server is running and try again.", true);
      if (!timedOut) checkHealth();
      return;
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.ok && body && body.status === "ok") {
      showVerdict(card, body);
    } else if (response.ok && body && body.status === "rejected") {
      showProblem(card, "rejected", body.verdict || "Cannot judge this photo", body.reason, false);
      card.part(".meta").textContent = modelLine(body);
    } else if (response.status === 401) {
      $("key-form").hidden = false;
      $("key-input").focus();
      showProblem(card, "unauthorized", "This server needs an API key",
        "Enter the key above; the photo is sent again when you save it.", true);
    } else {
      const [title, retry] = describeStatus(response.status);
      const detail = body && body.detail ? capitalise(body.detail) : `The server answered ${response.status}.`;
      showProblem(card, "error", title, detail, retry);
    }
  }

  function describeStatus(status) {
    switch (status) {
      case 400: return ["This file is not a readable image", false];
      case 413: return ["This file is too large", false];
      case 415: return ["This kind of file is not accepted", false];
      case 503: return ["The server is not ready yet", true];
      default: return [`The server could not check this photo (error ${status})`, true];
    }
  }

  // --- small helpers -----------------------------------------------------------------------------------

  function announce(text) {
    announcer.textContent = text;
  }

  function capitalise(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  wirePicking();
  wireWhere();
  checkHealth();
})();
