# psycopg2 (Debian's python3-psycopg2) through clawpatrol: a denied
# statement, then good ones on the same connection. Connection settings
# come from PG* variables.
import psycopg2

conn = psycopg2.connect("")
cur = conn.cursor()

try:
    cur.execute("SELECT pg_read_file('/etc/passwd')")
    print("read-file: ran")
except psycopg2.Error as e:
    print("read-file:", e.pgcode, e.pgerror.strip().splitlines()[0])
conn.rollback()
cur.execute("SELECT 40 + 2")
print("answer:", cur.fetchone()[0])

# Mid-transaction (psycopg2 opens one implicitly).
cur.execute("INSERT INTO log (what) VALUES ('psycopg2')")
try:
    cur.execute("DELETE FROM t")
    print("delete: ran")
except psycopg2.Error as e:
    print("delete:", e.pgcode)
conn.rollback()
cur.execute("SELECT count(*) FROM log WHERE what = 'psycopg2'")
print("kept:", cur.fetchone()[0])

# Large objects go through libpq's fast-path function calls.
try:
    conn.lobject(0, "wb").write(b"x")
    print("lobject: ran")
except psycopg2.Error as e:
    print("lobject:", e.pgcode, str(e).strip().splitlines()[0])
conn.rollback()
cur.execute("SELECT 7")
print("after:", cur.fetchone()[0])
conn.close()
