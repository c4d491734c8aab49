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
// join that died right after its redemption); "redeem ADDR FILE STATEDIR"
// does the same presenting the certificate of the cloudd whose state is in
// STATEDIR, as cloudctl join does on that node; "forgebeat ADDR CERTFILE"
// forges a heartbeat and then passes a member's certificate second in its
// chain (forgeBeat).
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

func main() {
	if len(os.Args) == 5 && os.Args[1] == "redeem" {
		cert, err := tls.LoadX509KeyPair(os.Args[4]+"/server.crt", os.Args[4]+"/server.key")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}}}
		if err := redeem(hc, os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: tokenflood flood|joinflood|big|once ADDR N, tokenflood redeem ADDR TOKENFILE [STATEDIR], or tokenflood forgebeat ADDR MEMBERCERTFILE")
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
	if os.Args[1] == "forgebeat" { // forgebeat ADDR MEMBERCERTFILE
		if err := forgeBeat(os.Args[2], os.Args[3]); err != nil {
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

// forgeBeat plays a leader's heartbeat without being a member: it posts to
// microcluster's heartbeat endpoint (reachable before trust) a member list
// holding a certificate of its own, then asks a members-only endpoint with
// that certificate; then it sends the member's certificate in
// MEMBERCERTFILE second in its chain and asks two members-only endpoints. It prints each status ("heartbeat 403" /
// "members 403" / "chained PATH 403" when all are refused).
func forgeBeat(addr, memberCertFile string) error {
	const name = "evil"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}}}
	member := map[string]any{"name": name, "address": "192.0.2.9:7443", "certificate": string(certPEM)}
	body, err := json.Marshal(map[string]any{"begin_round": false, "cluster_members": map[string]any{name: member}})
	if err != nil {
		return err
	}
	code, err := postTo(hc, "https://"+addr+"/cluster/internal/heartbeat", body)
	if err != nil {
		return err
	}
	fmt.Printf("heartbeat %d\n", code)
	resp, err := hc.Get("https://" + addr + "/cluster/1.0/cluster")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	fmt.Printf("members %d\n", resp.StatusCode)

	// A member's certificate (public: the joiners of the cluster get every
	// member's, and TLS 1.2 shows it on the wire), sent second after the
	// forger's own (TLS proves only the first).
	text, err := os.ReadFile(memberCertFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(text)
	if block == nil {
		return fmt.Errorf("%s holds no PEM certificate", memberCertFile)
	}
	pair.Certificate = append(pair.Certificate, block.Bytes)
	chained := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}}}
	for _, p := range []string{"/cluster/1.0/cluster", "/1.0/tokens"} {
		resp, err := chained.Get("https://" + addr + p)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Printf("chained %s %d\n", p, resp.StatusCode)
	}
	return nil
}
