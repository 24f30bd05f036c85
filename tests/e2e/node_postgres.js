// What a node-postgres application sees: run against a node and against PostgreSQL 15 by
// test_node_postgres.py, which compares the JSON this prints. Usage: node node_postgres.js <connection url>
"use strict";
const { Client } = require("pg");

// A value as JSON keeps it: its JS type with it (int4 a number, int8 a string, a Date, a Buffer).
function shown(value) {
  if (value === null) return null;
  if (value instanceof Date) return { Date: value.toISOString() };
  if (Buffer.isBuffer(value)) return { Buffer: value.toString("hex") };
  if (typeof value === "object") return { object: value };
  return { [typeof value]: value };
}

function rows(result) {
  return result.rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, shown(v)])));
}

async function failure(client, sql) {
  try {
    await client.query(sql);
    return null;
  } catch (e) {
    return e.code;
  }
}

async function main() {
  const client = new Client({ connectionString: process.argv[2] });
  await client.connect();
  const out = {};
  await client.query(
    "CREATE TABLE np (id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, f8 double precision, " +
      "n numeric(10,2), d date, ts timestamp, tz timestamptz, jb jsonb, j json, b bytea, flag boolean, t text)",
  );
  const insert = {
    name: "insert_np",
    text: "INSERT INTO np VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
  };
  const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678));
  await client.query({
    ...insert,
    values: [1, 7, 42, "9007199254740993", 0.1, "70.40", "2024-02-29", "2024-01-02 03:04:05.123456", when,
      { a: [1, 2.5, { b: null }], "é": "x" }, JSON.stringify([1, "x"]), Buffer.from([0, 1, 2, 255]), true, "héllo"],
  });
  await client.query({
    ...insert,
    values: [2, -32768, -2147483648, "-9223372036854775808", -1.5e300, "0.1", "0001-01-01",
      "2000-01-01 00:00:00", new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 999)), null, null, Buffer.alloc(0),
      false, null],
  });
  // a named statement parsed once and run with other values; a Date with an offset
  await client.query({
    ...insert,
    values: [3, null, 2147483647, "1", null, "-12345678.99", "2024-01-02", null, "2024-06-01T12:00:00+02:00",
      "3.0", "3.0", null, null, ""],
  });

  // transactions: committed, rolled back, and aborted by an error
  await client.query("BEGIN");
  await client.query({ ...insert, values: [4, 1, 1, "1", 1, "1", null, null, null, null, null, null, null, "in"] });
  await client.query("COMMIT");
  await client.query("BEGIN");
  await client.query({ ...insert, values: [5, 1, 1, "1", 1, "1", null, null, null, null, null, null, null, "no"] });
  out.duplicate = await failure(client, "INSERT INTO np (id) VALUES (1)");
  out.aborted = await failure(client, "SELECT 1");
  await client.query("ROLLBACK");
  await client.query("BEGIN");
  await client.query({ ...insert, values: [6, 1, 1, "1", 1, "1", null, null, null, null, null, null, null, "no"] });
  await client.query("ROLLBACK");

  const all = await client.query("SELECT * FROM np ORDER BY id");
  out.rows = rows(all);
  out.types = all.fields.map((f) => [f.name, f.dataTypeID]);
  const get = { name: "get_np", text: "SELECT i4, i8, tz, n FROM np WHERE id = $1" };
  out.named = [...rows(await client.query({ ...get, values: [1] })), ...rows(await client.query({ ...get, values: [3] }))];
  const counted = await client.query("SELECT 1 AS one, 3000000000 AS big, count(*) AS n, sum(n) AS total FROM np");
  out.counted = rows(counted);
  out.counted_types = counted.fields.map((f) => [f.name, f.dataTypeID]);
  // serial keys are int4 (a JS number), bigserial keys int8 (a string), in simple and extended queries;
  // their values are the node's to choose (strided, so that nodes never collide): only the types compare
  const keyTypes = (result) => result.rows.map((row) => typeof row.id);
  await client.query("CREATE TABLE sq (id serial PRIMARY KEY, v text)");
  await client.query("CREATE TABLE bsq (id bigserial PRIMARY KEY, v text)");
  out.serial = keyTypes(await client.query("INSERT INTO sq (v) VALUES ('a'), ('b') RETURNING id"));
  out.bigserial = keyTypes(await client.query("INSERT INTO bsq (v) VALUES ('a') RETURNING id"));
  const last = (await client.query("SELECT max(id) AS id FROM sq")).rows[0].id;
  out.serial_read = keyTypes(await client.query("SELECT id, v FROM sq ORDER BY id"));
  out.serial_named = keyTypes(await client.query({ name: "get_sq", text: "SELECT id FROM sq WHERE id = $1", values: [last] }));
  out.bigserial_read = keyTypes(await client.query({ text: "SELECT id FROM bsq WHERE v = $1", values: ["a"] }));
  out.text_mode = rows(await client.query({ text: "SELECT tz, d, ts FROM np WHERE id = 1", rowMode: undefined }));
  await client.end();
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n${JSON.stringify(e)}\n`);
  process.exit(1);
});
