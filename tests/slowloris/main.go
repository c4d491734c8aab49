// Command slowloris is a test helper run inside a namespace: "slowloris
// ADDR N WAIT" opens N connections to ADDR, half of them finishing a TLS
// handshake and then sending a request's headers a byte every 200 ms, half
// sending nothing at all (not even a TLS hello), and never finishing. It
// prints "open N" once all are connected, then "closed N" when the server
// has closed every one of them and exits 0; if some are still open after
// WAIT (a Go duration) it prints "still open K" and exits 1.
//
// "slowloris hold ADDR N" opens N connections one after the other, each
// finishing a TLS handshake and one kept-alive request, prints "held X
// refused Y" (those the server cut), keeps the held ones open (idle) until
// its standard input closes, then closes them and exits 0.
package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "hold" {
		hold(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) != 4 {
		fail(fmt.Errorf("usage: slowloris ADDR N WAIT"))
	}
	addr := os.Args[1]
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fail(err)
	}
	wait, err := time.ParseDuration(os.Args[3])
	if err != nil {
		fail(err)
	}
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fail(fmt.Errorf("connection %d: %w", i, err))
		}
		if i%2 == 0 {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				fail(fmt.Errorf("connection %d: TLS handshake: %w", i, err))
			}
			_ = tc.SetDeadline(time.Time{})
			c = tc
		}
		conns = append(conns, c)
	}
	fmt.Printf("open %d\n", n)

	var wg sync.WaitGroup
	var mu sync.Mutex
	closed := 0
	header := []byte("GET /cluster/1.0 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			defer c.Close()
			done := make(chan struct{})
			go func() {
				// The server closing the connection ends this read.
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						close(done)
						return
					}
				}
			}()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(wait)
			for j := 0; ; j++ {
				select {
				case <-done:
					mu.Lock()
					closed++
					mu.Unlock()
					return
				case <-deadline:
					return
				case <-tick.C:
					if i%2 == 0 {
						b := byte('a')
						if j < len(header) {
							b = header[j]
						}
						_, _ = c.Write([]byte{b})
					}
				}
			}
		}(i, c)
	}
	wg.Wait()
	if closed < n {
		fmt.Printf("still open %d\n", n-closed)
		os.Exit(1)
	}
	fmt.Printf("closed %d\n", n)
}

func hold(addr, count string) {
	n, err := strconv.Atoi(count)
	if err != nil {
		fail(err)
	}
	var held []net.Conn
	refused := 0
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fail(fmt.Errorf("connection %d: %w", i, err))
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			refused++
			c.Close()
			continue
		}
		// One whole request, so the connection then waits idle under the
		// server's idle timeout (minutes), not its header timeout (10 s).
		if err := request(tc); err != nil {
			refused++
			c.Close()
			continue
		}
		_ = tc.SetDeadline(time.Time{})
		held = append(held, tc)
	}
	fmt.Printf("held %d refused %d\n", len(held), refused)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
}

// request sends GET /cluster/1.0 on c, keeping it alive, and reads the
// whole answer (any status).
func request(c net.Conn) error {
	if _, err := io.WriteString(c, "GET /cluster/1.0 HTTP/1.1\r\nHost: cloudd\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
