// nbupload's browser file picker (an anywidget ES module; no build step).
//
// Each picked or dropped file goes to the kernel in slices read with File.slice, one widget
// message per slice with the bytes as a binary buffer. The kernel answers `need` (the ranges
// it lacks), then `ack` per slice written; at most `window` slices are unacknowledged, so the
// page never holds more than window x slice bytes. Files go one after another. See
// nbupload/panel/picker.py for the kernel's side.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
const LABELS = {
  spooling: "sending to the kernel",
  incomplete: "incomplete",
  uploading: "in the kernel",
  failed: "failed",
  cancelled: "cancelled",
};
// The second leg: the engine's task from the kernel to the server.
const UPLOAD_LABELS = {
  queued: "queued",
  connecting: "connecting",
  uploading: "uploading",
  paused: "paused",
  done: "uploaded",
  failed: "failed",
  cancelled: "cancelled",
};

function formatSize(n) {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${UNITS[i]}`;
}

function newId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Answers from the kernel for one transfer, awaited in order.
class Inbox {
  constructor() {
    this.items = [];
    this.waiter = null;
    this.closed = false;
  }
  put(msg) {
    this.items.push(msg);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w();
    }
  }
  close() {
    this.closed = true;
    this.put(null);
  }
  async next() {
    while (this.items.length === 0) await new Promise((resolve) => (this.waiter = resolve));
    const msg = this.items.shift();
    if (msg === null || this.closed) throw new Error("the picker was closed");
    return msg;
  }
}

function readProblem(file, err) {
  const what = err && err.name ? `${err.name}: ${err.message}` : String(err);
  return `could not read ${file.name} in the browser (${what}); was it moved, deleted or changed? Pick it again to continue`;
}

function render({ model, el: root }) {
  root.classList.add("nbupload-picker-root");
  const input = el("input", "nbupload-picker-input");
  input.type = "file";
  input.multiple = true;
  const button = el("button", "nbupload-picker-button jupyter-button widget-button", "Pick files");
  button.type = "button";
  button.title = "Upload files from this computer (any size: sent to the kernel in slices)";
  const zone = el("span", "nbupload-drop-hint", "or drop files here");
  const bar = el("div", "nbupload-picker-head");
  bar.append(button, input, zone);
  const note = el("div", "nbupload-picker-message");
  const list = el("div", "nbupload-picks");
  root.append(bar, note, list);

  const inboxes = new Map(); // transfer id -> Inbox
  const local = new Map(); // key -> {spooled, state, message, name, size} while this view sends
  const queue = [];
  let running = false;
  let gone = false;

  const onMsg = (msg) => {
    if (!msg || typeof msg !== "object") return;
    const inbox = inboxes.get(msg.file);
    if (inbox) inbox.put(msg);
  };
  model.on("msg:custom", onMsg);

  function say(lines, error) {
    note.replaceChildren(...lines.map((t) => el("div", error ? "nbupload-error" : "nbupload-info", t)));
  }

  function draw() {
    root.dataset.received = String(model.get("received") || 0);
    const entries = new Map();
    for (const e of model.get("entries") || []) entries.set(e.key, { ...e });
    for (const [key, l] of local) {
      const e = entries.get(key) || { key, name: l.name, size: l.size, spooled: 0, state: "", message: "", task: "" };
      e.spooled = Math.max(e.spooled || 0, l.spooled || 0);
      if (l.state) {
        e.state = l.state;
        e.message = l.message;
      }
      entries.set(key, e);
    }
    const rows = [];
    for (const e of entries.values()) {
      const row = el("div", "nbupload-pick");
      Object.assign(row.dataset, {
        key: e.key, name: e.name, state: e.state, size: String(e.size), spooled: String(e.spooled), task: e.task || "",
        uploaded: String(e.uploaded || 0), uploadState: e.upload_state || "",
      });
      const name = el("span", "nbupload-pick-name", e.name);
      name.title = e.name;
      const track = el("div", "nbupload-pick-bar");
      const fill = el("div", "nbupload-pick-fill");
      fill.style.width = `${e.size ? (100 * e.spooled) / e.size : 100}%`;
      track.append(fill);
      const bytes = el("span", "nbupload-pick-bytes", `${formatSize(e.spooled)} / ${formatSize(e.size)} in the kernel`);
      const state = el("span", "nbupload-pick-state", LABELS[e.state] || e.state);
      row.append(name, track, bytes, state);
      if (e.task) {
        // both legs: browser -> kernel above, kernel -> server here
        const leg = el("span", "nbupload-pick-leg", "to the server");
        const track2 = el("div", "nbupload-pick-bar nbupload-pick-upload-bar");
        const fill2 = el("div", "nbupload-pick-fill");
        fill2.style.width = `${e.size ? (100 * (e.uploaded || 0)) / e.size : 100}%`;
        track2.append(fill2);
        const bytes2 = el("span", "nbupload-pick-bytes nbupload-pick-uploaded",
          `${formatSize(e.uploaded || 0)} / ${formatSize(e.size)} at the server`);
        const state2 = el("span", "nbupload-pick-state nbupload-pick-upload-state",
          UPLOAD_LABELS[e.upload_state] || e.upload_state || "queued");
        row.append(leg, track2, bytes2, state2);
      }
      if (e.state === "spooling" || e.state === "incomplete" || e.state === "failed") {
        if (!e.task) {
          const x = el("button", "nbupload-pick-cancel jupyter-button widget-button", "Cancel");
          x.type = "button";
          x.title = `Stop sending ${e.name} and remove the part the kernel holds`;
          x.addEventListener("click", () => {
            local.delete(e.key);
            model.send({ kind: "cancel", key: e.key });
          });
          row.append(x);
        }
      }
      if (e.message) {
        const cls = e.state === "failed" ? "nbupload-pick-message nbupload-error" : "nbupload-pick-message";
        row.append(el("div", cls, e.message));
      }
      rows.push(row);
    }
    list.replaceChildren(...rows);
  }
  model.on("change:entries", draw);
  model.on("change:received", draw);

  async function transfer(file) {
    const fid = newId();
    const inbox = new Inbox();
    inboxes.set(fid, inbox);
    let key = null;
    const mark = (fields) => {
      if (key === null) return;
      local.set(key, { name: file.name, size: file.size, ...(local.get(key) || {}), ...fields });
      draw();
    };
    try {
      model.send({ kind: "begin", file: fid, name: file.name, size: file.size, last_modified: file.lastModified, mime: file.type });
      let msg = await inbox.next();
      key = msg.key || null;
      if (msg.kind !== "need") {
        if (msg.kind === "stop") say([msg.message], true);
        mark({ spooled: msg.spooled || 0, state: "", message: "" });
        return;
      }
      mark({ spooled: msg.spooled, state: "spooling", message: "" });
      const slices = [];
      for (const [start, end] of msg.ranges) {
        for (let at = start; at < end; at += msg.slice) slices.push([at, Math.min(at + msg.slice, end)]);
      }
      let next = 0;
      let inflight = 0;
      const sendOne = async () => {
        const [start, end] = slices[next];
        next += 1;
        let buffer;
        try {
          buffer = await file.slice(start, end).arrayBuffer();
        } catch (err) {
          const problem = readProblem(file, err);
          model.send({ kind: "fail", file: fid, message: problem });
          throw Object.assign(new Error(problem), { shown: true });
        }
        model.send({ kind: "slice", file: fid, offset: start }, undefined, [buffer]);
        inflight += 1;
      };
      while (next < slices.length && inflight < msg.window) await sendOne();
      for (;;) {
        msg = await inbox.next();
        if (msg.kind === "ack") {
          inflight -= 1;
          mark({ spooled: msg.spooled });
          if (next < slices.length) await sendOne();
        } else if (msg.kind === "done") {
          mark({ spooled: msg.spooled, state: "", message: "" });
          return;
        } else if (msg.kind === "stop") {
          if (msg.message !== "cancelled") say([msg.message], true);
          mark({ state: "", message: "" });
          return;
        }
      }
    } catch (err) {
      if (gone) return;
      const problem = err && err.shown ? err.message : readProblem(file, err);
      say([problem], true);
      mark({ state: "failed", message: problem });
    } finally {
      inboxes.delete(fid);
      if (key !== null) {
        const l = local.get(key);
        if (l && !l.state) local.delete(key); // the kernel's entry says the rest
      }
      draw();
    }
  }

  async function pump() {
    if (running) return;
    running = true;
    try {
      while (queue.length && !gone) await transfer(queue.shift());
    } finally {
      running = false;
    }
  }

  function take(files, problems) {
    say(problems, true);
    if (!files.length && !problems.length) say(["nothing to upload was picked"], true);
    queue.push(...files);
    pump();
  }

  input.addEventListener("change", () => {
    const files = Array.from(input.files || []);
    input.value = "";
    take(files, []);
  });

  const stop = (event) => {
    event.preventDefault();
    event.stopPropagation();
  };
  root.addEventListener("dragenter", (event) => {
    stop(event);
    root.classList.add("nbupload-dragging");
  });
  root.addEventListener("dragover", (event) => {
    stop(event);
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
  });
  root.addEventListener("dragleave", (event) => {
    if (event.target === root) root.classList.remove("nbupload-dragging");
  });
  root.addEventListener("drop", (event) => {
    stop(event);
    root.classList.remove("nbupload-dragging");
    const files = [];
    const problems = [];
    const dt = event.dataTransfer;
    const items = dt && dt.items ? Array.from(dt.items) : [];
    if (items.length) {
      for (const item of items) {
        if (item.kind !== "file") continue;
        const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
        const file = item.getAsFile();
        if (entry && entry.isDirectory) {
          problems.push(`${entry.name} is a folder: folders are not uploaded; pick or drop the files inside it`);
        } else if (file) {
          files.push(file);
        } else {
          problems.push("something dropped here is not a file the browser can read");
        }
      }
    } else if (dt) {
      files.push(...Array.from(dt.files || []));
    }
    take(files, problems);
  });

  draw();
  return () => {
    gone = true;
    model.off("msg:custom", onMsg);
    model.off("change:entries", draw);
    model.off("change:received", draw);
    for (const inbox of inboxes.values()) inbox.close();
  };
}

export default { render };
