// amari serve: curation requests, live updates and verify. Every piece of HTML set here was rendered and
// escaped by the server; names from JSON go into the page as text only.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="amari-csrf"]').content;
  const folders = JSON.parse(document.body.dataset.folders);
  const message = document.getElementById("message");
  const live = document.getElementById("live");
  const gallery = document.getElementById("gallery");
  let version = document.body.dataset.version;

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  async function post(url, body, headers = {"content-type": "application/json"}) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"x-amari-csrf": csrf, ...headers},
      body,
    });
    const answer = await response.json().catch(() => ({error: response.statusText}));
    if (!response.ok) throw new Error(answer.error || response.statusText);
    return answer;
  }

  // -- curation ------------------------------------------------------------------------------------

  const inTrash = (tile) => tile.dataset.folder.startsWith("trash/");

  async function move(tile, to) {
    const name = tile.dataset.name;
    const request = to === null
      ? ["/api/restore", {name, from: tile.dataset.folder}]
      : ["/api/move", {name, from: tile.dataset.folder, to}];
    try {
      const answer = await post(request[0], JSON.stringify(request[1]));
      const next = tile.nextElementSibling || tile.previousElementSibling;
      tile.remove();
      if (next) next.focus();
      say(`${answer.moved.name} moved to ${answer.moved.to}`);
    } catch (error) {
      say(`${name}: ${error.message}`);
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const tile = button.closest(".tile");
    if (tile && button.dataset.moveTo) {
      move(tile, button.dataset.moveTo);
    } else if (tile && button.hasAttribute("data-restore")) {
      move(tile, null);
    } else if (button.id === "empty-trash" && window.confirm("Delete the trash's images for good?")) {
      try {
        say(`${(await post("/api/trash/empty", "{}")).deleted} images deleted`);
        refresh();
      } catch (error) {
        say(error.message);
      }
    }
  });

  document.addEventListener("keydown", (event) => {
    const tile = event.target.closest && event.target.closest(".tile");
    if (!tile || event.ctrlKey || event.metaKey || event.altKey) return;
    const index = Number(event.key) - 1;
    if (Number.isInteger(index) && index >= 0 && index < folders.length && !inTrash(tile)) {
      if (folders[index] !== tile.dataset.folder) move(tile, folders[index]);
    } else if ((event.key === "Delete" || event.key === "Backspace") && !inTrash(tile)) {
      move(tile, "trash");
    } else if (event.key === "r" && inTrash(tile)) {
      move(tile, null);
    } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
      (tile.nextElementSibling || tile).focus();
    } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
      (tile.previousElementSibling || tile).focus();
    } else {
      return;
    }
    event.preventDefault();
  });

  // -- live ----------------------------------------------------------------------------------------

  async function refresh() {
    if (!gallery) return;
    const url = new URL(window.location.href);
    url.searchParams.set("part", "grid");
    const response = await fetch(url, {credentials: "same-origin"});
    if (!response.ok) return;
    const focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest(".tile") : null;
    const name = focused ? focused.dataset.name : null;
    gallery.innerHTML = await response.text();
    for (const tile of gallery.querySelectorAll(".tile")) {
      if (tile.dataset.name === name) {
        tile.focus();
        break;
      }
    }
  }

  if (window.EventSource && live) {
    const events = new EventSource("/api/events?panel=1");
    events.addEventListener("progress", (event) => {
      const record = JSON.parse(event.data);
      live.innerHTML = record.html;
      for (const count of document.querySelectorAll("[data-count]")) {
        const folder = count.dataset.count;
        const value = folder === "trash" ? record.trash : record.folders[folder];
        if (value !== undefined) count.textContent = value;
      }
      if (record.version !== version) {
        version = record.version;
        refresh();
      }
    });
  }

  // -- verify --------------------------------------------------------------------------------------

  const drop = document.getElementById("drop");
  if (drop) {
    const input = document.getElementById("verify-file");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files.length) verify(event.dataTransfer.files[0]);
    });
    input.addEventListener("change", () => input.files.length && verify(input.files[0]));
  }

  async function verify(file) {
    say(`checking ${file.name}…`);
    try {
      const found = await post("/api/verify", file, {
        "content-type": "application/octet-stream",
        "x-filename": encodeURIComponent(file.name),
      });
      say("");
      show(found);
    } catch (error) {
      say(`${file.name}: ${error.message}`);
    }
  }

  function show(found) {
    document.getElementById("verdict").hidden = false;
    document.getElementById("verdict-name").textContent = found.path;
    document.getElementById("verdict-text").textContent = found.verdict;
    const mark = found.watermark;
    const match = found.fingerprint;
    const c2pa = found.c2pa;
    const rows = [
      ["marks", found.marks.length ? found.marks.join(", ") : "none"],
      ["watermark", mark ? `${mark.found ? "found" : "not found"} (${mark.bits_matched}/${mark.bits_total} bits)`
        : "none (the image is too small to carry one)"],
      ["fingerprint", match ? `a ${match.kind} copy of ${match.path} (${match.registry})`
        : `no match in ${found.registries.length} registr${found.registries.length === 1 ? "y" : "ies"}`],
      ["c2pa", c2pa ? `${c2pa.state}${c2pa.signer ? `, signed by ${c2pa.signer}` : ""}` : (found.c2pa_note || "none")],
      ["metadata", found.amari ? `amari metadata${found.amari.synthetic ? " (synthetic)" : ""}` : "none"],
      ["size", `${found.width}×${found.height} ${found.format}`],
    ];
    const list = document.getElementById("verdict-marks");
    list.replaceChildren();
    for (const [label, value] of rows) {
      const term = document.createElement("dt");
      term.textContent = label;
      const text = document.createElement("dd");
      text.textContent = value;
      list.append(term, text);
    }
  }
})();
