// Command joinas is a test helper run inside a namespace: a hand-written
// joiner that skips cloudctl. "joinas ADDR TOKENFILE REDEEM JOIN MYADDR"
// redeems the cloudctl token in TOKENFILE at cloudd on ADDR for the name
// REDEEM (POST /1.0/token-redeem), then presents the microcluster secret it
// got to microcluster's own join endpoint (POST /cluster/1.0/cluster) under
// the name JOIN with address MYADDR and a fresh certificate. It prints
// "secret S" and then "join CODE BODY" (the answer's status and first
// bytes), and exits 0 whatever the join's answer was.
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
	"time"

	"github.com/cloudctl/cloudctl/api"
)

func main() {
	if len(os.Args) != 6 {
		fail(fmt.Errorf("usage: joinas ADDR TOKENFILE REDEEM JOIN MYADDR"))
	}
	addr, tokFile, redeemName, joinName, myAddr := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	raw, err := os.ReadFile(tokFile)
	if err != nil {
		fail(err)
	}
	jt, err := api.DecodeJoinToken(string(raw))
	if err != nil {
		fail(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

	code, body, err := do(hc, http.MethodPost, "https://"+addr+"/1.0/token-redeem", api.TokenCheck{Name: redeemName, Secret: jt.Secret})
	if err != nil {
		fail(fmt.Errorf("redeem: %w", err))
	}
	var redeemed struct {
		Metadata api.TokenCheckResult `json:"metadata"`
	}
	if err := json.Unmarshal(body, &redeemed); err != nil || code != 200 || redeemed.Metadata.Secret == "" {
		fail(fmt.Errorf("redeem for %s: %d %s", redeemName, code, body))
	}
	fmt.Printf("secret %s\n", redeemed.Metadata.Secret)

	// The leader refuses a joiner whose extensions differ from its own:
	// take them from the server's unauthenticated self-description.
	code, body, err = do(hc, http.MethodGet, "https://"+addr+"/cluster/1.0", nil)
	if err != nil || code != 200 {
		fail(fmt.Errorf("GET /cluster/1.0: %d %s %v", code, body, err))
	}
	var server struct {
		Metadata struct {
			Extensions json.RawMessage `json:"extensions"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &server); err != nil {
		fail(fmt.Errorf("decode /cluster/1.0: %w", err))
	}
	cert, err := selfSigned(joinName)
	if err != nil {
		fail(err)
	}
	req := map[string]any{
		"name":                    joinName,
		"address":                 myAddr,
		"certificate":             cert,
		"schema_internal_version": 0,
		"schema_external_version": 0,
		"extensions":              server.Metadata.Extensions,
		"secret":                  redeemed.Metadata.Secret,
	}
	code, body, err = do(hc, http.MethodPost, "https://"+addr+"/cluster/1.0/cluster", req)
	if err != nil {
		fail(fmt.Errorf("join: %w", err))
	}
	if len(body) > 600 {
		body = body[:600]
	}
	fmt.Printf("join %d %s\n", code, bytes.TrimSpace(body))
}

func do(hc *http.Client, method, url string, v any) (int, []byte, error) {
	var rd io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func selfSigned(name string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
