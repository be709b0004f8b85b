// Structured outputs through the TypeScript SDK's own helpers, printed as one JSON object.
//
//   node parse.mjs BASE_URL API_KEY PACKAGE MODEL PROMPT
//
// `messages.parse` with `jsonSchemaOutputFormat` (plain) and `messages.stream` with the
// same format (its final message carries `parsed_output` too). Run by
// tests/e2e/test_structured_outputs_sdk.py.

const [baseURL, apiKey, pkg, model, prompt] = process.argv.slice(2);
const { default: Anthropic } = await import(pkg);
const { jsonSchemaOutputFormat } = await import(`${pkg}/helpers/json-schema`);

const client = new Anthropic({ baseURL, apiKey, maxRetries: 0 });
const schema = {
  type: "object",
  properties: {
    city: { type: "string" },
    population: { type: "integer" },
    tags: { type: "array", items: { type: "string" } },
  },
  required: ["city", "population", "tags"],
  additionalProperties: false,
};
const params = {
  model,
  max_tokens: 200,
  messages: [{ role: "user", content: prompt }],
  output_config: { format: jsonSchemaOutputFormat(schema) },
};

const results = {};
try {
  const message = await client.messages.parse(params);
  results.parse = { ok: true, parsed: message.parsed_output, stop: message.stop_reason };
} catch (err) {
  results.parse = { ok: false, error: String(err?.message ?? err) };
}
try {
  const stream = client.messages.stream(params);
  const message = await stream.finalMessage();
  results.stream = { ok: true, parsed: message.parsed_output, stop: message.stop_reason };
} catch (err) {
  results.stream = { ok: false, error: String(err?.message ?? err) };
}
try {
  const bad = { ...schema, properties: { ...schema.properties, n: { type: "integer" } } };
  delete bad.additionalProperties;
  await client.messages.create({ ...params, output_config: { format: { type: "json_schema", schema: bad } } });
  results.refused = { ok: false };
} catch (err) {
  results.refused = { ok: true, status: err?.status, message: err?.error?.error?.message };
}
console.log(JSON.stringify(results));
