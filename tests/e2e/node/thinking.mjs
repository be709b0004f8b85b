// Extended thinking and context management through the TypeScript SDK, printed as JSON.
//
//   node thinking.mjs BASE_URL API_KEY PACKAGE
//
// A streamed reply with thinking (the helper's `thinking` and `signature` events and
// its final message), the thinking block sent back unchanged and tampered, and a
// beta request with context management. Run by tests/e2e/test_thinking_sdk.py.

const [baseURL, apiKey, pkg] = process.argv.slice(2);
const { default: Anthropic } = await import(pkg);
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });

const prompt = "think: first the facts\nsay: the answer";
const params = {
  model: "thinker",
  max_tokens: 2048,
  thinking: { type: "enabled", budget_tokens: 1024 },
  messages: [{ role: "user", content: prompt }],
};
const results = {};

const stream = client.messages.stream(params);
const thoughts = [];
const signatures = [];
stream.on("thinking", (delta) => thoughts.push(delta));
stream.on("signature", (signature) => signatures.push(signature));
const final = await stream.finalMessage();
results.stream = { thoughts, signatures, content: final.content };

async function outcome(fn) {
  try {
    const message = await fn();
    return { ok: true, stop: message.stop_reason };
  } catch (err) {
    return { ok: false, status: err?.status, message: err?.error?.error?.message };
  }
}

const history = (content) => [
  { role: "user", content: prompt },
  { role: "assistant", content },
  { role: "user", content: "say: again" },
];
results.sentBack = await outcome(() =>
  client.messages.create({ ...params, messages: history(final.content) }),
);
const forged = final.content.map((b) => (b.type === "thinking" ? { ...b, thinking: "other" } : b));
results.tampered = await outcome(() =>
  client.messages.create({ ...params, messages: history(forged) }),
);

const managed = await client.beta.messages.create({
  model: "thinker",
  max_tokens: 100,
  betas: ["context-management-2025-06-27"],
  thinking: { type: "adaptive" },
  context_management: { edits: [{ type: "clear_thinking_20251015", keep: { type: "thinking_turns", value: 1 } }] },
  messages: [
    { role: "user", content: "hi" },
    { role: "assistant", content: final.content },
    { role: "user", content: "hi" },
    { role: "assistant", content: final.content },
    { role: "user", content: "say: done" },
  ],
});
results.contextManagement = managed.context_management;
console.log(JSON.stringify(results));
