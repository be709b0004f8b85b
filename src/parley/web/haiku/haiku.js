// The classic bring-your-own-key demo: a picture from the webcam or a file goes
// straight from this page to the API as a base64 image block, and a haiku streams back.
import { MessageProgress } from "../../shared/api.js";
import { bindConnection, storedItem, storeItem } from "../../shared/connection.js";
import { fillModelPicker, formatMs, h, hideError, showError } from "../../shared/ui.js";

const MODEL_KEY = "parley.haiku.model";
// The image types the API accepts (api-spec §5.3); anything else is re-encoded.
const MEDIA_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"];
// Larger pictures are scaled down first: the API would shrink them anyway.
const MAX_EDGE = 1568;
const MAX_BYTES = 5 * 1024 * 1024;
const ASK = "Reply with the haiku only: three short lines, 5-7-5 syllables.";
const $ = (id) => document.getElementById(id);

const state = { client: null, models: [], picture: null, camera: null, running: false };

// ---- models -------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  hideError($("error"));
  if (!state.client) {
    state.models = [];
    select.replaceChildren(h("option", { value: "" }, "Enter a key to load models"));
    select.disabled = true;
    updateModelNotice();
    return;
  }
  select.replaceChildren(h("option", { value: "" }, "Loading models…"));
  try {
    state.models = await state.client.listModels();
  } catch (error) {
    state.models = [];
    select.replaceChildren(h("option", { value: "" }, "Could not load models"));
    showError($("error"), error, { hint: "Loading the model list (GET /v1/models) failed." });
  }
  fillModelPicker(select, state.models, storedItem(MODEL_KEY), { markTextOnly: true });
  updateModelNotice();
}

function selectedModel() {
  return state.models.find((m) => m.id === $("model").value) ?? null;
}

function readsImages(model) {
  return model?.capabilities?.image_input?.supported !== false;
}

function updateModelNotice() {
  const model = selectedModel();
  const notice = $("text-only-notice");
  const textOnly = model !== null && !readsImages(model);
  notice.hidden = !textOnly;
  if (textOnly) {
    notice.textContent =
      `${model.display_name || model.id} reads text only, so the API will refuse a picture ` +
      "(send one to see its answer). You can still get a haiku about a subject you type.";
  }
  $("fallback").hidden = !textOnly;
  updateButtons();
}

function updateButtons() {
  const ready = Boolean(state.client && selectedModel()) && !state.running;
  $("write-haiku").disabled = !ready || !state.picture;
  $("write-subject").disabled = !ready;
}

// ---- the picture --------------------------------------------------------------

function cameraMessage(text) {
  const box = $("camera-message");
  box.textContent = text;
  box.hidden = !text;
}

async function startCamera() {
  cameraMessage("");
  if (!navigator.mediaDevices?.getUserMedia) {
    cameraMessage(
      "This browser offers no camera here (camera access needs https or localhost). Upload an image instead.",
    );
    return;
  }
  try {
    state.camera = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  } catch (error) {
    const reasons = {
      NotFoundError: "No camera is available on this device.",
      OverconstrainedError: "No camera is available on this device.",
      NotAllowedError: "Camera access was blocked; it can be allowed in the site settings.",
      NotReadableError: "The camera is busy in another application.",
    };
    const reason = reasons[error.name] ?? `The camera could not start (${error.message || error.name}).`;
    cameraMessage(`${reason} You can upload an image instead.`);
    return;
  }
  const video = $("video");
  video.srcObject = state.camera;
  await video.play();
  showStage("video");
  $("start-camera").hidden = true;
  $("take-photo").hidden = false;
  $("stop-camera").hidden = false;
}

function stopCamera() {
  for (const track of state.camera?.getTracks() ?? []) track.stop();
  state.camera = null;
  $("video").srcObject = null;
  $("start-camera").hidden = false;
  $("take-photo").hidden = true;
  $("stop-camera").hidden = true;
  showStage(state.picture ? "preview" : "empty");
}

function takePhoto() {
  const video = $("video");
  if (!video.videoWidth) return;
  setPicture(encode(video, video.videoWidth, video.videoHeight));
  stopCamera();
}

/** Draws a video frame or image onto a canvas, scaled to MAX_EDGE, as base64 JPEG. */
function encode(source, width, height) {
  const scale = Math.min(1, MAX_EDGE / Math.max(width, height));
  const canvas = $("canvas");
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff"; // transparent areas would turn black in a JPEG
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(source, 0, 0, canvas.width, canvas.height);
  const url = canvas.toDataURL("image/jpeg", 0.88);
  return { mediaType: "image/jpeg", data: url.slice(url.indexOf(",") + 1), width: canvas.width, height: canvas.height };
}

async function upload(file) {
  cameraMessage("");
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    cameraMessage(`${file.name} is not an image.`);
    return;
  }
  const url = URL.createObjectURL(file);
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const { naturalWidth: width, naturalHeight: height } = image;
    if (MEDIA_TYPES.includes(file.type) && Math.max(width, height) <= MAX_EDGE && file.size <= MAX_BYTES) {
      setPicture({ mediaType: file.type, data: await base64(file), width, height });
    } else {
      setPicture(encode(image, width, height));
    }
  } catch {
    cameraMessage(`${file.name} could not be read as an image.`);
  } finally {
    URL.revokeObjectURL(url);
  }
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function setPicture(picture) {
  state.picture = picture;
  $("preview").src = `data:${picture.mediaType};base64,${picture.data}`;
  showStage("preview");
  const kb = Math.max(1, Math.round((picture.data.length * 3) / 4 / 1024));
  const kind = picture.mediaType.replace("image/", "").toUpperCase();
  $("picture-info").textContent = `${kind} · ${picture.width}×${picture.height} · ${kb} KB`;
  updateButtons();
}

function showStage(what) {
  $("video").hidden = what !== "video";
  $("preview").hidden = what !== "preview";
  $("stage-empty").hidden = what !== "empty";
}

// ---- asking for a haiku -------------------------------------------------------

async function write(content, label) {
  if (state.running || !state.client) return;
  const model = $("model").value;
  storeItem(MODEL_KEY, model);
  state.running = true;
  updateButtons();
  hideError($("error"));
  const out = $("haiku");
  out.textContent = "";
  out.classList.add("streaming");
  $("result-label").textContent = label;
  $("result-meta").textContent = "Writing…";
  $("result").hidden = false;
  const progress = new MessageProgress({ onText: (delta) => out.append(delta) });
  try {
    const params = { model, max_tokens: 200, messages: [{ role: "user", content }] };
    for await (const event of state.client.stream(params)) progress.apply(event);
    progress.finish();
    const meta = [progress.model ?? model, `${progress.outputTokens ?? "?"} tokens`];
    meta.push(`first token after ${formatMs(progress.firstTokenMs)}`);
    if (progress.stopReason && progress.stopReason !== "end_turn") meta.push(`stopped: ${progress.stopReason}`);
    $("result-meta").textContent = meta.join(" · ");
  } catch (error) {
    if (!out.textContent) $("result").hidden = true;
    else $("result-meta").textContent = "The reply was cut short.";
    const refused = error.status === 400 && /image/i.test(error.message);
    showError($("error"), error, {
      hint: refused ? "This model cannot read pictures. Write a haiku about a subject instead, below." : "",
    });
    if (refused) {
      $("fallback").hidden = false;
      $("subject").focus();
    }
  } finally {
    out.classList.remove("streaming");
    state.running = false;
    updateButtons();
  }
}

function writeAboutPicture() {
  const picture = state.picture;
  if (!picture) return;
  write(
    [
      { type: "image", source: { type: "base64", media_type: picture.mediaType, data: picture.data } },
      { type: "text", text: `Write a haiku about this picture. ${ASK}` },
    ],
    "Your haiku",
  );
}

function writeAboutSubject(event) {
  event.preventDefault();
  const subject = $("subject").value.trim();
  if (!subject) {
    $("subject").focus();
    return;
  }
  write(`Write a haiku about ${subject}. ${ASK}`, `A haiku about ${subject}`);
}

// ---- wiring -------------------------------------------------------------------

bindConnection($("connection"), {
  onChange: (client) => {
    state.client = client;
    loadModels();
  },
});
$("model").addEventListener("change", () => {
  storeItem(MODEL_KEY, $("model").value);
  updateModelNotice();
});
$("start-camera").addEventListener("click", startCamera);
$("stop-camera").addEventListener("click", stopCamera);
$("take-photo").addEventListener("click", takePhoto);
$("upload").addEventListener("change", (event) => {
  upload(event.target.files[0]);
  event.target.value = ""; // choosing the same file again still fires `change`
});
$("write-haiku").addEventListener("click", writeAboutPicture);
$("fallback-form").addEventListener("submit", writeAboutSubject);
showStage("empty");
