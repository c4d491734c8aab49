// Command dbwriter is a test helper run inside a node's network namespace:
// "write DSN SECONDS" inserts rows in a loop and prints the id of every
// acknowledged insert; "verify DSN" reads ids on stdin and prints the ones
// missing from the table; "try DSN" makes one write and exits non-zero with
// the server's error. A DSN with cafile=PATH connects over TLS trusting
// that CA (package dbtls).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cloudctl/cloudctl/tests/dbtls"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: dbwriter write|verify|try DSN [SECONDS]")
		os.Exit(2)
	}
	db, err := dbtls.Open(os.Args[2], 2*time.Second, 3*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS acked (id BIGINT PRIMARY KEY, at DATETIME(6))"); err != nil && os.Args[1] != "try" {
		fmt.Fprintln(os.Stderr, "create:", err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "write":
		secs, _ := strconv.Atoi(os.Args[3])
		end := time.Now().Add(time.Duration(secs) * time.Second)
		start := time.Now().UnixNano()
		for i := int64(0); time.Now().Before(end); i++ {
			id := start + i
			c, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := db.ExecContext(c, "INSERT INTO acked (id, at) VALUES (?, NOW(6))", id)
			cancel()
			if err == nil {
				fmt.Println(id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "verify":
		sc := bufio.NewScanner(os.Stdin)
		missing := 0
		for sc.Scan() {
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM acked WHERE id = ?", sc.Text()).Scan(&n); err != nil {
				fmt.Fprintln(os.Stderr, "verify:", err)
				os.Exit(1)
			}
			if n != 1 {
				fmt.Println(sc.Text())
				missing++
			}
		}
		if missing > 0 {
			os.Exit(3)
		}
	case "try":
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS acked (id BIGINT PRIMARY KEY, at DATETIME(6))"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO acked (id, at) VALUES (?, NOW(6))", time.Now().UnixNano()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
