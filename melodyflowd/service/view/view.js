// The live view's page: the lead sheet, the lit bar and chord, the line ahead, the last
// notes played, and the buttons. State comes from /events (server-sent events).
"use strict";

const token = new URLSearchParams(location.search).get("token");
const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
const $ = (id) => document.getElementById(id);
let chart = null;
let state = null;
let received = 0;          // performance.now() when `state` came
let cells = [];            // [bar] -> {cell, chords: [element], beat}
const drawn = { ahead: "", played: "", lit: "" };

function noteName(pitch) {
  return NAMES[pitch % 12] + (Math.floor(pitch / 12) - 1);
}

function age(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
}

function buildSheet() {
  const sheet = $("sheet");
  sheet.replaceChildren();
  cells = [];
  drawn.lit = drawn.ahead = "";
  const beats = chart.time[0] * 4 / chart.time[1];
  chart.bars.forEach((bar, i) => {
    const cell = document.createElement("div");
    cell.className = "bar";
    cell.dataset.bar = i;
    if (bar.section && (i === 0 || chart.bars[i - 1].section !== bar.section)) {
      const label = document.createElement("span");
      label.className = "section";
      label.textContent = bar.section;
      cell.append(label);
    }
    const number = document.createElement("span");
    number.className = "no";
    number.textContent = i + 1;
    cell.append(number);
    const chords = bar.chords.map((span) => {
      const el = document.createElement("span");
      el.className = bar.empty ? "chord held" : "chord";
      el.textContent = span.symbol;
      if (span.alternate) {
        const alt = document.createElement("small");
        alt.className = "alternate";
        alt.textContent = ` (${span.alternate})`;
        el.append(alt);
      }
      el.style.flex = `${span.beats} 1 0`;
      cell.append(el);
      return el;
    });
    const beat = document.createElement("div");
    beat.className = "beat";
    cell.append(beat);
    sheet.append(cell);
    cells.push({ cell, chords, beat, beats });
  });
  $("title").textContent = chart.title || "melodyflowd";
  document.title = (chart.title || "melodyflowd") + " · melodyflowd";
  const key = chart.key ? ` · key ${chart.key}` : "";
  $("meta").textContent = `${chart.time[0]}/${chart.time[1]} · ${chart.tempo} bpm${key} · ` +
    `${chart.bars.length} bars`;
}

function lightBar() {
  const pos = state && state.position;
  const key = pos ? `${pos.bar}:${pos.span}` : "";
  if (key === drawn.lit) return;
  drawn.lit = key;
  for (const c of cells) {
    c.cell.classList.remove("now");
    c.chords.forEach((el) => el.classList.remove("lit"));
    c.cell.removeAttribute("aria-current");
  }
  if (!pos || !cells[pos.bar]) return;
  const c = cells[pos.bar];
  c.cell.classList.add("now");
  if (c.chords[pos.span]) c.chords[pos.span].classList.add("lit");
  c.cell.setAttribute("aria-current", "true");
}

function drawRoll() {
  const svg = $("roll");
  svg.replaceChildren();
  if (!state || !state.ahead || !chart) return;
  const W = 800, H = 150, top = 18;
  const barLen = state.ahead.bar_len;
  const total = barLen * state.ahead.bars.length;
  const notes = state.ahead.notes;
  const pitches = notes.map((n) => n.pitch);
  const lo = Math.min(...pitches, 60) - 2, hi = Math.max(...pitches, 72) + 2;
  const x = (bar, beat) => ((bar * barLen + beat) / total) * W;
  const y = (p) => top + ((hi - p) / (hi - lo)) * (H - top - 4);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  for (let p = lo; p <= hi; p++) {
    if (p % 12 === 0) {
      add("line", { class: "grid", x1: 0, x2: W, y1: y(p), y2: y(p) });
      add("text", { x: W - 4, y: y(p) - 2, "text-anchor": "end" }, noteName(p));
    }
  }
  state.ahead.bars.forEach((bar, k) => {
    add("line", { class: "barline", x1: x(k, 0), x2: x(k, 0), y1: 0, y2: H });
    (chart.bars[bar] ? chart.bars[bar].chords : []).forEach((span) => {
      add("text", { x: x(k, span.start) + 4, y: 13 }, span.symbol);
    });
  });
  const h = Math.max(3, (H - top) / (hi - lo) - 1);
  for (const n of notes) {
    const rect = add("rect", {
      class: "note" + (n.borrowed ? " borrowed" : "") + (n.next ? " next" : ""),
      x: x(n.bar, n.beat), y: y(n.pitch) - h / 2,
      width: Math.max(3, (n.len / total) * W - 1), height: h, rx: 2,
    });
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = noteName(n.pitch);
    rect.append(title);
    rect.dataset.pitch = n.pitch;
  }
  add("line", { class: "head", id: "head", x1: 0, x2: 0, y1: 0, y2: H });
}

function render() {
  if (!state) return;
  $("status").textContent = state.status;
  $("clock").textContent = state.clock || "";
  $("status").textContent = state.following
    ? `${state.status}; following ${state.following}` : state.status;
  lightBar();
  if (state.variations) {
    $("variation").textContent = `${state.variation + 1} / ${state.variations}`;
    $("rotate").textContent = state.rotate
      ? `rotating each chorus from ${state.selected + 1}` : "";
  }
  if (state.bank) {
    $("pending").textContent = state.bank.pending ? "a new bank swaps in at the next bar line" : "";
  }
  const controls = state.controls || {};
  for (const name of ["regenerate", "next", "previous", "panic"]) {
    $(name).disabled = !token || !controls[name];
  }
  if (!token) $("feedback").textContent = "view only: open the address melodyflowd printed (with its token) for the buttons";
  // Redraw the roll and the played notes only when they change (most states move the beat).
  const ahead = JSON.stringify(state.ahead || null) + (chart ? chart.bars.length : 0);
  if (ahead !== drawn.ahead) {
    drawn.ahead = ahead;
    drawRoll();
  }
  const notes = JSON.stringify(state.played || []);
  if (notes !== drawn.played) {
    drawn.played = notes;
    $("played").replaceChildren(...(state.played || []).map((p) => {
      const el = document.createElement("span");
      el.textContent = noteName(p);
      el.dataset.pitch = p;
      return el;
    }));
  }
  $("count").textContent = state.played_count !== undefined ? `(${state.played_count} in all)` : "";
}

const FRAME_MS = 66;      // the beat marker moves 15 times a second: smooth enough, and
                         // the browser leaves the CPU to the music (60 would cost 4 times)
let shown = "";

function tick() {
  // Between two pushes (one a beat) the beat marker and the playhead move on at the tempo.
  if (state && state.position && cells[state.position.bar]) {
    const pos = state.position;
    let beat = pos.beat;
    if (state.clock === "midi clock" || state.clock === "internal clock") {
      beat = Math.min(pos.beat + ((performance.now() - received) / 1000) * pos.tempo / 60,
        Math.floor(pos.beat) + 1);
    }
    const key = `${pos.abs_bar}:${beat.toFixed(2)}:${received}`;
    if (key !== shown) {
      shown = key;
      const c = cells[pos.bar];
      c.beat.style.width = `${Math.min(100, (beat / state.ahead.bar_len) * 100)}%`;
      const head = document.getElementById("head");
      if (head) {
        const X = (beat / (state.ahead.bar_len * state.ahead.bars.length)) * 800;
        head.setAttribute("x1", X);
        head.setAttribute("x2", X);
      }
    }
  }
  if (state && state.bank) {
    const seconds = state.bank.age + (performance.now() - received) / 1000;
    const text = `${state.bank.source || "–"}, ${age(seconds)} old`;
    if ($("bank").textContent !== text) $("bank").textContent = text;
  }
  setTimeout(tick, FRAME_MS);
}

async function act(action) {
  $("feedback").textContent = "…";
  try {
    const response = await fetch("/action", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Melodyflowd-Token": token || "" },
      body: JSON.stringify({ action }),
    });
    const answer = await response.json();
    $("feedback").textContent = response.ok ? `${action}: done` : answer.error;
  } catch (err) {
    $("feedback").textContent = `${action}: ${err}`;
  }
}

function connect() {
  const events = new EventSource("/events");
  events.addEventListener("chart", (e) => {
    chart = JSON.parse(e.data);
    if (chart.bars) buildSheet();
    render();
  });
  events.addEventListener("state", (e) => {
    state = JSON.parse(e.data);
    received = performance.now();
    render();
  });
  events.onopen = () => document.body.classList.remove("offline");
  events.onerror = () => {
    document.body.classList.add("offline");
    $("status").textContent = "not connected (melodyflowd stopped?)";
  };
}

document.querySelectorAll("button[data-action]").forEach((b) => {
  b.addEventListener("click", () => act(b.dataset.action));
});
connect();
tick();
