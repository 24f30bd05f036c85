// Writes rows through node-postgres (text parameters, as it sends them) and prints every row as it reads
// them back. test_pg_values.py runs it against a node and against PostgreSQL 15 and compares the JSON.
// Usage: node node_values.js <connection url> < {"create": sql, "insert": sql, "select": sql, "rows": [...]}
"use strict";
const { Client } = require("pg");

function input(value) {
  if (value !== null && typeof value === "object" && "hex" in value) return Buffer.from(value.hex, "hex");
  if (value !== null && typeof value === "object" && "json" in value) return JSON.stringify(value.json);
  return value;
}

// A value as JSON keeps it, with its JS type (NaN and the infinities are no JSON numbers: as text).
function shown(value) {
  if (value === null) return null;
  if (value instanceof Date) return { Date: Number.isNaN(value.getTime()) ? "Invalid" : value.toISOString() };
  if (Buffer.isBuffer(value)) return { Buffer: value.toString("hex") };
  if (typeof value === "number" && !Number.isFinite(value)) return { number: String(value) };
  if (typeof value === "object") return { object: JSON.parse(JSON.stringify(value)) };
  return { [typeof value]: value };
}

async function main() {
  const spec = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const client = new Client({ connectionString: process.argv[2] });
  await client.connect();
  await client.query(spec.create);
  for (const row of spec.rows) {
    await client.query({ name: "insert_row", text: spec.insert, values: row.map(input) });
  }
  const result = await client.query(spec.select);
  process.stdout.write(JSON.stringify(result.rows.map((row) => result.fields.map((f) => shown(row[f.name])))));
  await client.end();
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n${JSON.stringify(e)}\n`);
  process.exit(1);
});
