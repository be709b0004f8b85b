// The Workbench: try a prompt against the public API, watch the reply stream in,
// turn the request into code. Everything goes through the API with the user's key.
import { ApiError, MessageProgress } from "../shared/api.js";
import { bindConnection, storedItem, storeItem } from "../shared/connection.js";
import { fillModelPicker, formatMs, h, hideError, showError } from "../shared/ui.js";
import { SETUP, curlCode, pythonCode, typescriptCode } from "./codegen.js";

const MODEL_KEY = "parley.workbench.model";
const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  models: [],
  turns: [{ role: "user", text: "", files: [] }],
  running: null, // the AbortController of the run in progress
  reply: null, // {prefill, text} of the last finished run, for "Add reply"
};

// ---- models -------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  if (!state.client) {
    state.models = [];
    select.replaceChildren(h("option", { value: "" }, "Enter a key to load models"));
    select.disabled = true;
    $("model-info").textContent = "";
    return;
  }
  select.replaceChildren(h("option", { value: "" }, "Loading models…"));
  try {
    state.models = await state.client.listModels();
    hideError($("error"));
  } catch (error) {
    state.models = [];
    select.replaceChildren(h("option", { value: "" }, "Could not load models"));
    showError($("error"), error, { hint: "Loading the model list (GET /v1/models) failed." });
    setRunState("error", "Error");
    return;
  }
  fillModelPicker(select, state.models, storedItem(MODEL_KEY), { short: true });
  showModelInfo();
}

function showModelInfo() {
  const model = state.models.find((m) => m.id === $("model").value);
  const maxTokens = $("max-tokens");
  if (!model) {
    $("model-info").textContent = "";
    return;
  }
  const parts = [model.id];
  if (model.max_input_tokens) parts.push(`${model.max_input_tokens.toLocaleString()} token context`);
  if (model.max_tokens) {
    parts.push(`up to ${model.max_tokens.toLocaleString()} output tokens`);
    maxTokens.max = String(model.max_tokens);
    if (Number(maxTokens.value) > model.max_tokens) maxTokens.value = String(model.max_tokens);
  }
  if (model.capabilities?.image_input?.supported === false) parts.push("text only");
  $("model-info").textContent = parts.join(" · ");
}

// ---- the conversation ---------------------------------------------------------

function renderTurns() {
  const list = $("turns");
  const last = state.turns.length - 1;
  list.replaceChildren(
    ...state.turns.map((turn, index) => {
      const prefill = index === last && turn.role === "assistant";
      const text = h("textarea", {
        class: "turn-text",
        rows: 2,
        "aria-label": `Message ${index + 1} (${turn.role})`,
        placeholder: turn.role === "user" ? "Write a user message…" : "Assistant reply, or a prefill the reply continues…",
        oninput: (event) => {
          turn.text = event.target.value;
          grow(event.target);
        },
      });
      text.value = turn.text;
      const role = h(
        "select",
        {
          class: "turn-role",
          "aria-label": `Role of message ${index + 1}`,
          onchange: (event) => {
            turn.role = event.target.value;
            renderTurns();
          },
        },
        h("option", { value: "user", selected: turn.role === "user" }, "User"),
        h("option", { value: "assistant", selected: turn.role === "assistant" }, "Assistant"),
      );
      const remove = h(
        "button",
        {
          type: "button",
          class: "quiet remove-turn",
          title: "Remove this message",
          "aria-label": `Remove message ${index + 1}`,
          disabled: state.turns.length === 1,
          onclick: () => {
            state.turns.splice(index, 1);
            renderTurns();
          },
        },
        "✕",
      );
      return h(
        "li",
        { class: `turn ${turn.role}${prefill ? " is-prefill" : ""}` },
        h("div", { class: "turn-head" }, role, prefill ? h("span", { class: "badge" }, "Prefill") : null, remove),
        text,
        turn.role === "user" ? attachments(turn, index) : null,
      );
    }),
  );
  for (const area of list.querySelectorAll("textarea")) grow(area);
}

// A user turn's files: uploaded with the Files API when chosen, then sent as
// `file_id` sources (images as image blocks, anything else as a document).
function attachments(turn, index) {
  const input = h("input", {
    type: "file",
    class: "attach-input",
    accept: "application/pdf,text/plain,.txt,.md,.csv,image/png,image/jpeg,image/gif,image/webp",
    "aria-label": `Attach a file to message ${index + 1}`,
    hidden: true,
    onchange: async (event) => {
      const file = event.target.files?.[0];
      event.target.value = "";
      if (file) await attach(turn, file);
    },
  });
  const chips = (turn.files ?? []).map((file, n) =>
    h(
      "span",
      { class: "attachment", "data-file-id": file.id, title: `${file.mime_type}, ${file.size_bytes} bytes` },
      h("span", { class: "attachment-kind" }, file.mime_type.split("/").pop().toUpperCase()),
      file.filename,
      h(
        "button",
        {
          type: "button",
          class: "quiet",
          "aria-label": `Remove ${file.filename}`,
          onclick: () => {
            turn.files.splice(n, 1);
            renderTurns();
          },
        },
        "✕",
      ),
    ),
  );
  const button = h(
    "button",
    { type: "button", class: "quiet attach", disabled: !state.client, onclick: () => input.click() },
    turn.uploading ? "Uploading…" : "Attach file…",
  );
  return h("div", { class: "attachments" }, button, input, ...chips);
}

async function attach(turn, file) {
  turn.uploading = true;
  renderTurns();
  try {
    const meta = await state.client.uploadFile(file);
    turn.files = [...(turn.files ?? []), meta];
    hideError($("error"));
  } catch (error) {
    showError($("error"), error, { hint: "Uploading the file (POST /v1/files) failed." });
  } finally {
    turn.uploading = false;
    renderTurns();
  }
}

function turnContent(turn) {
  if (!turn.files?.length) return turn.text;
  const blocks = turn.files.map((file) => ({
    type: file.mime_type.startsWith("image/") ? "image" : "document",
    source: { type: "file", file_id: file.id },
  }));
  if (turn.text) blocks.push({ type: "text", text: turn.text });
  return blocks;
}

function grow(area) {
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight + 2, 420)}px`;
}

function addTurn(role, text = "") {
  const last = state.turns.at(-1);
  state.turns.push({ role: role ?? (last?.role === "user" ? "assistant" : "user"), text, files: [] });
  renderTurns();
  const areas = $("turns").querySelectorAll("textarea");
  areas[areas.length - 1]?.focus();
}

// ---- the request --------------------------------------------------------------

/** "a\nb" as typed (backslash, n) becomes a real newline; "\\" a backslash. */
function unescape(line) {
  return line.replace(/\\([nt\\])/g, (_, c) => ({ n: "\n", t: "\t", "\\": "\\" })[c]);
}

function stopSequences() {
  return $("stop-sequences")
    .value.split("\n")
    .filter((line) => line !== "")
    .map(unescape);
}

/** The request body, exactly as Run sends it (without `stream`) and Get code shows it. */
function requestParams() {
  const turns = state.turns.filter(
    (turn, index) => !(index === state.turns.length - 1 && turn.role === "assistant" && !turn.text),
  );
  const params = { model: $("model").value, max_tokens: Number($("max-tokens").value) };
  // 1.0 is the API's default: leave it out, so the request (and Get code) stays what
  // every API version and SDK generation accepts (see codegen.js).
  const temperature = Number($("temperature").value);
  if (temperature !== 1) params.temperature = temperature;
  const system = $("system").value;
  if (system.trim()) params.system = system;
  const stops = stopSequences();
  if (stops.length) params.stop_sequences = stops;
  params.messages = turns.map((turn) => ({
    role: turn.role,
    content: turn.role === "user" ? turnContent(turn) : turn.text,
  }));
  return params;
}

function problem() {
  if (!state.client) return "Enter your API key (top right) and press Save.";
  if (!$("model").value) return "Choose a model.";
  const maxTokens = Number($("max-tokens").value);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) return "Max tokens must be a whole number of at least 1.";
  return null;
}

// ---- running ------------------------------------------------------------------

function setRunState(name, label) {
  const el = $("run-state");
  el.dataset.state = name;
  el.textContent = label;
  $("cursor").hidden = name !== "streaming";
}

function resetResponse(prefill) {
  $("output-prefill").textContent = prefill;
  $("output-text").textContent = "";
  for (const id of ["stop-reason", "stop-sequence", "input-tokens", "output-tokens", "ttft", "total-time"]) {
    $(id).textContent = "–";
  }
  $("request-id").textContent = "";
  $("keep-reply").disabled = true;
  hideError($("error"));
}

function showProgress(progress) {
  $("stop-reason").textContent = progress.stopReason ?? "–";
  $("stop-sequence").textContent = progress.stopSequence === null ? "–" : JSON.stringify(progress.stopSequence);
  $("input-tokens").textContent = progress.inputTokens ?? "–";
  $("output-tokens").textContent = progress.outputTokens ?? "–";
  $("ttft").textContent = progress.firstTokenMs === null ? "–" : `${Math.round(progress.firstTokenMs)} ms`;
  $("total-time").textContent = formatMs(progress.totalMs);
}

async function run() {
  if (state.running) return;
  const why = problem();
  if (why) {
    resetResponse("");
    showError($("error"), { message: why });
    setRunState("error", "Not sent");
    return;
  }
  const params = requestParams();
  storeItem(MODEL_KEY, params.model);
  const last = params.messages.at(-1);
  const prefill = last?.role === "assistant" ? last.content : "";
  resetResponse(prefill);
  setRunState("streaming", "Waiting for the first token…");

  const controller = new AbortController();
  state.running = controller;
  $("run").hidden = true;
  $("stop").hidden = false;
  const textOut = $("output-text");
  const progress = new MessageProgress({
    onText: (delta) => {
      if (textOut.textContent === "") setRunState("streaming", "Streaming…");
      textOut.append(delta);
    },
  });
  try {
    const events = state.client.stream(params, {
      signal: controller.signal,
      onResponse: (response) => {
        progress.requestId = response.headers.get("request-id");
      },
    });
    for await (const event of events) {
      progress.apply(event);
      showProgress(progress);
    }
    progress.finish();
    setRunState("done", progress.done ? "Done" : "Ended without message_stop");
    state.reply = { prefill, text: progress.text };
    $("keep-reply").disabled = false;
  } catch (error) {
    progress.finish();
    if (error.name === "AbortError") {
      setRunState("stopped", "Stopped");
    } else {
      setRunState("error", error.midStream ? "Failed mid-stream" : "Failed");
      showError($("error"), error instanceof ApiError ? error : { message: String(error) });
    }
  } finally {
    showProgress(progress);
    if (progress.requestId) $("request-id").textContent = `request-id: ${progress.requestId}`;
    state.running = null;
    $("run").hidden = false;
    $("stop").hidden = true;
  }
}

function keepReply() {
  if (!state.reply) return;
  const last = state.turns.at(-1);
  if (state.reply.prefill && last?.role === "assistant") last.text += state.reply.text;
  else state.turns.push({ role: "assistant", text: state.reply.text, files: [] });
  state.turns.push({ role: "user", text: "", files: [] });
  state.reply = null;
  $("keep-reply").disabled = true;
  renderTurns();
  const areas = $("turns").querySelectorAll("textarea");
  areas[areas.length - 1]?.focus();
}

// ---- get code -----------------------------------------------------------------

function showCode() {
  const client = state.client;
  const baseUrl = (client?.baseUrl ?? $("base-url").value.trim()) || location.origin;
  const params = requestParams();
  if (!params.model) params.model = "MODEL_ID";
  $("code-base-url").textContent = baseUrl;
  $("code-python").textContent = pythonCode(baseUrl, params);
  $("code-typescript").textContent = typescriptCode(baseUrl, params);
  $("code-curl").textContent = curlCode(baseUrl, params);
  selectTab(document.querySelector(".tab[aria-selected='true']").dataset.lang);
  $("code-dialog").showModal();
}

function selectTab(lang) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.lang === lang));
  }
  for (const pre of document.querySelectorAll("pre.code")) pre.hidden = pre.dataset.lang !== lang;
  $("code-setup").textContent = SETUP[lang];
}

async function copyCode() {
  const lang = document.querySelector(".tab[aria-selected='true']").dataset.lang;
  const text = $(`code-${lang}`).textContent;
  const button = $("copy-code");
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    // No clipboard access (an insecure origin): select the code for Ctrl+C instead.
    getSelection().selectAllChildren($(`code-${lang}`));
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

// ---- wiring -------------------------------------------------------------------

function start() {
  bindConnection($("connection"), {
    onChange: (client) => {
      state.client = client;
      loadModels();
      renderTurns(); // attaching needs a key
    },
  });
  $("model").addEventListener("change", () => {
    storeItem(MODEL_KEY, $("model").value);
    showModelInfo();
  });
  const temperature = $("temperature");
  const showTemperature = () => ($("temperature-value").textContent = Number(temperature.value).toFixed(2));
  temperature.addEventListener("input", showTemperature);
  showTemperature();
  $("add-turn").addEventListener("click", () => addTurn());
  $("run").addEventListener("click", run);
  $("stop").addEventListener("click", () => state.running?.abort());
  $("keep-reply").addEventListener("click", keepReply);
  $("get-code").addEventListener("click", showCode);
  $("close-code").addEventListener("click", () => $("code-dialog").close());
  $("copy-code").addEventListener("click", copyCode);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => selectTab(tab.dataset.lang));
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  renderTurns();
}

start();
