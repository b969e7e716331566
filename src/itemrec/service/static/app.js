// itemrec web page: recognise a dropped or chosen photo, show the top-k items; enrol with the token.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenKey = "itemrec-token";

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const isJson = (response.headers.get("content-type") || "").includes("application/json");
  const body = isJson ? await response.json() : await response.blob();
  if (!response.ok) {
    const message = isJson && body.error ? body.error.message : response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

async function showStatus() {
  try {
    const health = await api("/health");
    const g = health.gallery;
    $("status").textContent = `${g.items} items, ${g.vectors} vectors; unknown below ${g.threshold === null ? "(no threshold)" : g.threshold.toFixed(3)}`;
  } catch (err) {
    $("status").textContent = `cannot read the gallery (${err.message})`;
  }
}

async function thumbnail(img, itemId) {
  try {
    const blob = await api(`/items/${encodeURIComponent(itemId)}/thumbnail`);
    img.src = URL.createObjectURL(blob);
  } catch (err) {
    img.replaceWith(Object.assign(document.createElement("span"), { className: "nothumb", textContent: "no photo" }));
  }
}

function renderResult(result) {
  const verdict = $("verdict");
  const best = result.matches[0];
  verdict.className = result.unknown ? "unknown" : "known";
  if (result.unknown) {
    verdict.textContent = best ? `unknown (closest: ${best.name}, ${best.similarity.toFixed(3)})` : "unknown";
  } else {
    verdict.textContent = `${best.name} (${best.item_id})`;
  }
  const list = $("matches");
  list.replaceChildren();
  for (const m of result.matches) {
    const li = document.createElement("li");
    li.className = "match";
    li.dataset.itemId = m.item_id;
    const img = document.createElement("img");
    img.className = "thumb";
    img.alt = m.name;
    const name = Object.assign(document.createElement("span"), { className: "name", textContent: `${m.name} (${m.item_id})` });
    const score = Object.assign(document.createElement("span"), { className: "score", textContent: m.similarity.toFixed(3) });
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(0, m.similarity) * 100}%`;
    li.append(img, name, score, bar);
    list.append(li);
    thumbnail(img, m.item_id);
  }
}

async function recognise(file) {
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("drop-text").textContent = file.name;
  $("verdict").className = "busy";
  $("verdict").textContent = "recognising…";
  $("matches").replaceChildren();
  const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 5));
  try {
    const result = await api(`/recognize?k=${k}`, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    renderResult(result);
  } catch (err) {
    $("verdict").className = "error";
    $("verdict").textContent = err.message;
  }
}

async function enrol(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("item_id", $("item-id").value.trim());
  if ($("item-name").value.trim()) form.append("name", $("item-name").value.trim());
  if ($("item-attrs").value.trim()) form.append("attributes", $("item-attrs").value.trim());
  for (const f of $("item-photos").files) form.append("image", f, f.name);
  const out = $("enrol-result");
  out.className = "busy";
  out.textContent = "enrolling…";
  try {
    const r = await api("/items", { method: "POST", body: form });
    out.className = "known";
    out.textContent = `enrolled ${r.item_id}: ${r.n_vectors} photo(s)`;
    showStatus();
  } catch (err) {
    out.className = "error";
    out.textContent = err.message;
  }
}

$("token").value = sessionStorage.getItem(tokenKey) || "";
$("token").addEventListener("change", () => { sessionStorage.setItem(tokenKey, $("token").value); showStatus(); });
$("photo").addEventListener("change", (e) => recognise(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); recognise(e.dataTransfer.files[0]); });
$("enrol-form").addEventListener("submit", enrol);
showStatus();
