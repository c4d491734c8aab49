// Command slowloris is a test helper run inside a namespace: "slowloris
// ADDR N WAIT" opens N connections to ADDR, half of them finishing a TLS
// handshake and then sending a request's headers a byte every 200 ms, half
// sending nothing at all (not even a TLS hello), and never finishing. It
// prints "open N" once all are connected, then "closed N" when the server
// has closed every one of them and exits 0; if some are still open after
// WAIT (a Go duration) it prints "still open K" and exits 1.
//
// "slowloris body ADDR N WAIT PATH..." opens N connections for each PATH,
// each finishing a TLS handshake and sending the whole headers of a POST to
// its PATH that declares a 1000-byte body, then the body a byte every
// 200 ms (200 s in all); it prints "open M" (M = N × the number of paths),
// then "closed M" or "still open K" as above.
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
	if len(os.Args) >= 6 && os.Args[1] == "body" {
		per, wait := counts(os.Args[3], os.Args[4])
		paths := os.Args[5:]
		n := per * len(paths)
		conns := dial(os.Args[2], n, func(int) bool { return true })
		body := make([]byte, 1000)
		for i := range body {
			body[i] = 'x'
		}
		for i, c := range conns {
			header := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", paths[i%len(paths)], len(body))
			if _, err := io.WriteString(c, header); err != nil {
				fail(fmt.Errorf("connection %d: headers: %w", i, err))
			}
		}
		fmt.Printf("open %d\n", n)
		drip(conns, func(_, j int) byte { return body[j%len(body)] }, wait)
		return
	}
	if len(os.Args) != 4 {
		fail(fmt.Errorf("usage: slowloris ADDR N WAIT | body ADDR N WAIT PATH... | hold ADDR N"))
	}
	n, wait := counts(os.Args[2], os.Args[3])
	conns := dial(os.Args[1], n, func(i int) bool { return i%2 == 0 })
	fmt.Printf("open %d\n", n)
	header := []byte("GET /cluster/1.0 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	drip(conns, func(i, j int) byte {
		if i%2 != 0 {
			return 0 // no TLS: send nothing
		}
		if j < len(header) {
			return header[j]
		}
		return 'a'
	}, wait)
}

func counts(n, wait string) (int, time.Duration) {
	c, err := strconv.Atoi(n)
	if err != nil {
		fail(err)
	}
	w, err := time.ParseDuration(wait)
	if err != nil {
		fail(err)
	}
	return c, w
}

// dial opens n connections to addr, those for which tlsOn says so
// finishing a TLS handshake.
func dial(addr string, n int, tlsOn func(i int) bool) []net.Conn {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fail(fmt.Errorf("connection %d: %w", i, err))
		}
		if tlsOn(i) {
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
	return conns
}

// drip sends on connection i, every 200 ms, the byte next(i, j) (none when
// it is 0) until the server closes the connection, then prints "closed N"
// when it closed all of them, or "still open K" after wait and exits 1.
func drip(conns []net.Conn, next func(i, j int) byte, wait time.Duration) {
	n := len(conns)
	var wg sync.WaitGroup
	var mu sync.Mutex
	closed := 0
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
					if b := next(i, j); b != 0 {
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
