// node-postgres through clawpatrol: a denied statement, then good ones on
// the same connection. Connection settings come from PG* variables.
const { Client } = require('pg');

(async () => {
  const c = new Client();
  await c.connect();
  try {
    await c.query("SELECT pg_read_file('/etc/passwd')");
    console.log('read-file: ran');
  } catch (e) {
    console.log('read-file:', e.code, e.message);
  }
  const r = await c.query('SELECT 40 + 2 AS answer');
  console.log('answer:', r.rows[0].answer);

  // Extended protocol (parameters): denied at Parse.
  try {
    await c.query('SELECT lo_get($1)', [1]);
    console.log('lo_get: ran');
  } catch (e) {
    console.log('lo_get:', e.code);
  }
  const r2 = await c.query('SELECT $1::int * 2 AS n', [21]);
  console.log('param:', r2.rows[0].n);

  // Mid-transaction: the transaction is aborted, the connection lives.
  await c.query('BEGIN');
  await c.query("INSERT INTO log (what) VALUES ('node')");
  try {
    await c.query('TRUNCATE log');
  } catch (e) {
    console.log('truncate:', e.code);
  }
  await c.query('ROLLBACK');
  const r3 = await c.query("SELECT count(*)::int AS n FROM log WHERE what = 'node'");
  console.log('kept:', r3.rows[0].n);

  // Queued without waiting.
  const rs = await Promise.all([
    c.query('SELECT 1 AS a'),
    c.query("SELECT pg_read_file('x')").catch((e) => e.code),
    c.query('SELECT 3 AS a'),
  ]);
  console.log('queued:', rs[0].rows[0].a, rs[1], rs[2].rows[0].a);
  await c.end();
})().catch((e) => {
  console.error('fatal:', e);
  process.exit(1);
});
