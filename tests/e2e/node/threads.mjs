// Message threads (beta) through the newest TypeScript SDK's own helpers, with their
// default arguments: `client.beta.messages.toolRunner(...)` (plain and streamed) and
// `client.beta.messages.thread(...)`. Prints one JSON object: each case's outcome and
// the `thread` field and message count of every request the SDK sent.
//
//   node threads.mjs BASE_URL API_KEY MODEL
//
// Run by tests/e2e/test_threads_sdk.py.

const [baseURL, apiKey, model] = process.argv.slice(2);
if (!baseURL || !apiKey || !model) {
  console.error("usage: node threads.mjs BASE_URL API_KEY MODEL");
  process.exit(2);
}

const { default: Anthropic } = await import("@anthropic-ai/sdk");
const { betaTool } = await import("@anthropic-ai/sdk/helpers/beta/json-schema");
const { VERSION } = await import("@anthropic-ai/sdk/version");

let sent = [];
const recordingFetch = async (url, init) => {
  if (String(url).endsWith("/v1/messages")) {
    const body = JSON.parse(init.body);
    sent.push({
      thread: body.thread ?? null,
      messages: body.messages.length,
      hasSystem: "system" in body,
      hasTools: "tools" in body,
      stream: body.stream ?? false,
      roles: body.messages.map((m) => m.role),
      beta: new Headers(init.headers).get("anthropic-beta"),
    });
  }
  return fetch(url, init);
};

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, fetch: recordingFetch });

const getWeather = betaTool({
  name: "get_weather",
  description: "Current weather for a city",
  inputSchema: {
    type: "object",
    properties: { city: { type: "string" }, unit: { type: "string" } },
    required: ["city", "unit"],
  },
  run: ({ city, unit }) => `21 degrees ${unit} in ${city}`,
});

function textOf(message) {
  return message.content
    .filter((block) => block.type === "text")
    .map((block) => block.text)
    .join("");
}

async function run(name, results, fn) {
  sent = [];
  try {
    results[name] = { ok: true, ...(await fn()), sent };
  } catch (err) {
    results[name] = {
      ok: false,
      error: {
        class: err?.constructor?.name,
        status: err?.status ?? null,
        body: err?.error ?? null,
        message: String(err?.message ?? err),
      },
      sent,
    };
  }
}

const results = { version: VERSION };

await run("runner", results, async () => {
  const runner = client.beta.messages.toolRunner({
    model,
    max_tokens: 100,
    system: "You check the weather.",
    messages: [{ role: "user", content: 'tool: get_weather {"city": "Rome", "unit": "celsius"}' }],
    tools: [getWeather],
  });
  const stops = [];
  const ids = [];
  for await (const message of runner) {
    stops.push(message.stop_reason);
    ids.push(message.id);
  }
  const final = await runner.done();
  return { stops, ids, finalText: textOf(final) };
});

await run("streamingRunner", results, async () => {
  const runner = client.beta.messages.toolRunner({
    model,
    max_tokens: 100,
    messages: [
      { role: "user", content: 'say: Looking.\ntool: get_weather {"city": "Lima", "unit": "celsius"}' },
    ],
    tools: [getWeather],
    stream: true,
  });
  const texts = [];
  for await (const stream of runner) {
    for await (const event of stream) {
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
        texts.push(event.delta.text);
      }
    }
  }
  const final = await runner.done();
  return { text: texts.join(""), finalText: textOf(final), stop: final.stop_reason };
});

await run("manySteps", results, async () => {
  let calls = 0;
  const step = betaTool({
    name: "step",
    description: "Take a step",
    inputSchema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] },
    run: () => `step ${++calls} done`,
  });
  const runner = client.beta.messages.toolRunner({
    model,
    max_tokens: 100,
    messages: [{ role: "user", content: "walk" }],
    tools: [step],
    tool_choice: { type: "any" },
    max_iterations: 4,
  });
  const stops = [];
  for await (const message of runner) stops.push(message.stop_reason);
  return { stops, calls };
});

await run("thread", results, async () => {
  const thread = client.beta.messages.thread({ model, max_tokens: 50, system: "Be brief." });
  const first = await thread.send({ role: "user", content: "say: Hello." });
  const second = await thread.send({ role: "user", content: "how are you" });
  const stream = thread.stream({ role: "user", content: "count: 4" });
  const deltas = [];
  stream.on("text", (delta) => deltas.push(delta));
  const third = await stream.finalMessage();
  const fourth = await thread.send({ role: "user", content: "and the end" });
  return {
    texts: [first, second, third, fourth].map(textOf),
    streamed: deltas.join(""),
    ids: [first, second, third, fourth].map((m) => m.id),
    inputTokens: [first, second, third, fourth].map((m) => m.usage.input_tokens),
    previousMessageId: thread.previousMessageId,
    historyLength: thread.messages.length,
  };
});

await run("fingerprint", results, async () => {
  const thread = client.beta.messages.thread({
    model,
    max_tokens: 50,
    tools: [{ name: "get_weather", input_schema: { type: "object" } }],
    tool_choice: { type: "auto" },
  });
  await thread.send({ role: "user", content: "hello" });
  let refused = null;
  try {
    await thread.send({ role: "user", content: "again" }, { tool_choice: { type: "any" } });
  } catch (err) {
    refused = {
      class: err?.constructor?.name,
      status: err?.status ?? null,
      errorCode: err?.error?.error?.details?.error_code ?? null,
      message: err?.error?.error?.message ?? String(err?.message ?? err),
    };
  }
  const after = await thread.send({ role: "user", content: "on" });
  return { refused, afterText: textOf(after) };
});

console.log(JSON.stringify(results));
