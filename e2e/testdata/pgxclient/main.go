// Command pgxclient drives pgx (github.com/jackc/pgx/v5) through clawpatrol
// for the end-to-end tests: a denied statement mid-batch (one pipeline up to
// one Sync) and mid-transaction, then the same connection goes on. The
// connection settings come from the PG* variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "")
	if err != nil {
		fmt.Println("connect:", err)
		os.Exit(1)
	}
	defer conn.Close(ctx)

	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT pg_read_file('/etc/passwd')")
	b.Queue("SELECT 3")
	br := conn.SendBatch(ctx, b)
	var n int
	err1 := br.QueryRow().Scan(&n)
	err2 := br.QueryRow().Scan(new(string))
	err3 := br.QueryRow().Scan(new(int))
	br.Close()
	fmt.Println("batch:", n, code(err1), code(err2), code(err3))

	tx, err := conn.Begin(ctx)
	if err != nil {
		fmt.Println("begin:", err)
		os.Exit(1)
	}
	_, err = tx.Exec(ctx, "INSERT INTO log (what) VALUES ('pgx')")
	fmt.Println("insert:", code(err))
	_, err = tx.Exec(ctx, "TRUNCATE log")
	fmt.Println("truncate:", code(err))
	tx.Rollback(ctx)

	var kept int
	err = conn.QueryRow(ctx, "SELECT count(*)::int FROM log WHERE what = 'pgx'").Scan(&kept)
	fmt.Println("kept:", kept, code(err))
	var answer int
	err = conn.QueryRow(ctx, "SELECT $1::int * 2", 21).Scan(&answer)
	fmt.Println("after:", answer, code(err))
}
