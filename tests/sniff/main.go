// Command sniff is a test helper run inside a namespace: "sniff SECONDS
// MARKER" reads every frame of every interface of its network namespace (a
// raw AF_PACKET socket) for SECONDS seconds and prints how many frames and
// bytes it saw and in how many frames MARKER appeared. The tests use it to
// show that data written to Ceph does not cross the wire in the clear.
// It only reads; it needs CAP_NET_RAW (the tests run as root).
package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// htons is the network byte order of a 16-bit value (ETH_P_ALL).
func htons(v uint16) uint16 { return v<<8 | v>>8 }

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sniff SECONDS MARKER")
		os.Exit(2)
	}
	secs, err := strconv.Atoi(os.Args[1])
	if err != nil || secs <= 0 || os.Args[2] == "" {
		fmt.Fprintln(os.Stderr, "usage: sniff SECONDS MARKER (SECONDS > 0, MARKER not empty)")
		os.Exit(2)
	}
	marker := []byte(os.Args[2])
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "raw socket:", err)
		os.Exit(1)
	}
	defer syscall.Close(fd)
	// Wake up every 200 ms to look at the clock.
	tv := syscall.Timeval{Usec: 200000}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		fmt.Fprintln(os.Stderr, "timeout:", err)
		os.Exit(1)
	}
	// Ready: the caller starts its writes after this line.
	fmt.Println("listening")
	buf := make([]byte, 1<<17)
	var frames, total, hits int
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
		frames++
		total += n
		if bytes.Contains(buf[:n], marker) {
			hits++
		}
	}
	fmt.Printf("frames %d bytes %d marker %d\n", frames, total, hits)
}
