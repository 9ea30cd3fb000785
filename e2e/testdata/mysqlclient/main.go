// Command mysqlclient drives go-sql-driver/mysql through clawpatrol for the
// end-to-end tests: prepared statements (the driver prepares whenever a
// query has arguments), a denied prepare, then the same pool goes on. The
// password comes from MYSQL_PWD, the host from MYSQL_HOST.
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/go-sql-driver/mysql"
)

func code(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprint(me.Number)
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

func main() {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "app", os.Getenv("MYSQL_PWD"), "tcp", os.Getenv("MYSQL_HOST")+":3306", "app"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one connection: what follows a deny uses the same one
	var name string
	err = db.QueryRow("SELECT name FROM t WHERE id = ?", 2).Scan(&name)
	fmt.Println("prepared:", name, code(err))
	_, err = db.Exec("DELETE FROM t WHERE id = ?", 1)
	fmt.Println("denied prepare:", code(err))
	var n int
	err = db.QueryRow("SELECT count(*) FROM t WHERE id > ?", 0).Scan(&n)
	fmt.Println("after:", n, code(err))
}
