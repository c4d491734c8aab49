// Command memberget is a test helper run inside a namespace: "memberget URL
// CERT KEY" sends a GET to a member's cluster API with the client
// certificate in the PEM files CERT and KEY (a member's own identity), and
// prints the answer's status code and the first bytes of its body. The
// server's certificate is not checked: the tests use it to see what cloudd
// answers a given caller, not to trust the answer.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: memberget URL CERT KEY")
		os.Exit(2)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true},
	}}
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 400))
	fmt.Printf("%d %s\n", resp.StatusCode, b)
}
