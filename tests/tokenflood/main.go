// Command tokenflood is a test helper run inside a namespace that is not a
// cluster member: "flood ADDR N" sends N join-token checks with a wrong
// secret to cloudd at ADDR, one after the other, and prints how many got
// each HTTP status ("200 3" / "429 997"); "joinflood ADDR N" does the same
// with N joins with a wrong secret at microcluster's join endpoint
// (POST /cluster/1.0/cluster); "big ADDR BYTES" sends one check
// with a body of BYTES bytes and prints its status; "once ADDR 0" sends one
// wrong check and prints the status and the answer; "redeem ADDR FILE"
// redeems the join token in FILE at ADDR, as a joiner does right before it
// joins, prints the status and the answer's reason, and joins nothing (a
// join that died right after its redemption).
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: tokenflood flood|joinflood|big|once ADDR N, or tokenflood redeem ADDR TOKENFILE")
		os.Exit(2)
	}
	// An attacker does not know the cluster certificate: no pin.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if os.Args[1] == "redeem" {
		if err := redeem(hc, os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	url := "https://" + os.Args[2] + "/1.0/token-check"
	post := func(body []byte) (int, error) { return postTo(hc, url, body) }
	switch os.Args[1] {
	case "flood":
		countStatuses(n, func(i int) (int, error) {
			return post([]byte(fmt.Sprintf(`{"name":"node%d","secret":"wrong-%d"}`, i%7, i)))
		})
	case "joinflood":
		join := "https://" + os.Args[2] + "/cluster/1.0/cluster"
		countStatuses(n, func(i int) (int, error) {
			return postTo(hc, join, []byte(fmt.Sprintf(`{"name":"node%d","address":"192.0.2.%d:7443","secret":"wrong-%d"}`, i%7, 1+i%200, i)))
		})
	case "once":
		resp, err := hc.Post(url, "application/json", strings.NewReader(`{"name":"node2","secret":"wrong"}`))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		fmt.Printf("%d %s\n", resp.StatusCode, b)
	case "big":
		body := `{"name":"node2","secret":"` + strings.Repeat("x", n) + `"}`
		code, err := post([]byte(body))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(code)
	}
}

// postTo posts body to url and returns the HTTP status.
func postTo(hc *http.Client, url string, body []byte) (int, error) {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// countStatuses makes n requests with do, one after the other, and prints
// how many got each status, in order of the status.
func countStatuses(n int, do func(i int) (int, error)) {
	counts := map[int]int{}
	for i := 0; i < n; i++ {
		code, err := do(i)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		counts[code]++
	}
	var keys []int
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		fmt.Printf("%d %d\n", k, counts[k])
	}
}

// redeem spends the token in file at addr and prints the HTTP status and the
// answer's reason ("200 ok" when the secret was handed out).
func redeem(hc *http.Client, addr, file string) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	jt, err := api.DecodeJoinToken(strings.TrimSpace(string(text)))
	if err != nil {
		return err
	}
	body, err := json.Marshal(api.TokenCheck{Name: jt.Name, Secret: jt.Secret})
	if err != nil {
		return err
	}
	resp, err := hc.Post("https://"+addr+"/1.0/token-redeem", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Metadata api.TokenCheckResult `json:"metadata"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&answer); err != nil {
		return fmt.Errorf("decode the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	fmt.Printf("%d %s\n", resp.StatusCode, answer.Metadata.Reason)
	return nil
}
