# cloudctl — build, test and demo. `make demo` and `make test` install their own dependencies.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
export CGO_ENABLED := 1
TAGS := pacific libsqlite3
GO := go
GOFLAGS_TAGS := -tags "$(TAGS)"
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/cloudctl/cloudctl/api.Version=$(VERSION)
DEMO_DIR ?= /tmp/cloudctl-demo

.PHONY: all deps build test unit integration stress demo demo-down lint bench install clean fuzz

all: build

deps:
	@./scripts/deps.sh

build:
	$(GO) build $(GOFLAGS_TAGS) -ldflags "$(LDFLAGS)" -o bin/cloudctl ./cmd/cloudctl
	$(GO) build $(GOFLAGS_TAGS) -ldflags "$(LDFLAGS)" -o bin/cloudd ./cmd/cloudd

# The whole suite: the packages' own tests, two packages at a time (the roles' tests of real
# LXD and Ceph in namespaces of their own among them; building the test binaries overlaps them),
# then the multi-node integration tests of ./tests one package alone (real daemons in namespaces,
# sharing the machine with nothing else), then each fuzzer briefly (its committed seed corpus
# under testdata/fuzz also runs in go test).
test: deps build lint
	pkgs=$$($(GO) list $(GOFLAGS_TAGS) ./... | grep -v '/tests$$') && $(GO) test $(GOFLAGS_TAGS) -count=1 -timeout 30m -p 2 $$pkgs
	$(GO) test $(GOFLAGS_TAGS) -count=1 -timeout 60m -p 1 ./tests/
	@$(MAKE) --no-print-directory fuzz

# Fuzzers (package:function), each run for FUZZTIME: the token decoder, the preseed and
# manifest parsers, the JSON bodies of the API endpoints.
FUZZ := ./api:FuzzDecodeJoinToken ./bootstrap:FuzzParsePreseed ./manifests:FuzzParse ./daemon:FuzzDecodeBodies
# A count, not a duration: with a duration, Go's fuzzer can end a run with
# "context deadline exceeded" as a failure (seen once in a CI-like run).
FUZZTIME ?= 50000x
fuzz:
	@set -e; for f in $(FUZZ); do \
	  $(GO) test $(GOFLAGS_TAGS) -run '^$$' -fuzz "^$${f##*:}$$" -fuzztime $(FUZZTIME) $${f%%:*}; \
	done

unit: build
	$(GO) test $(GOFLAGS_TAGS) -count=1 -short ./...

# Flakiness hunt: unit and terminal tests 20 times, the integration tests twice,
# with the CPUs kept busy; prints each test's failure count (scripts/stress.sh).
stress: deps build
	@./scripts/stress.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet $(GOFLAGS_TAGS) ./...

# The benchmark harness (tests/bench): real daemons in namespaces beside their floors; writes
# docs/benchmarks.md and docs/bench-*.svg. Knobs: CLOUDBENCH_ONLY=cli,boot,join,cloud,rest,fail,
# CLOUDBENCH_JOIN_N, CLOUDBENCH_JOIN_REPS, CLOUDBENCH_CLOUD_REPS, CLOUDBENCH_FAIL_REPS, CLOUDBENCH_OUT (see tests/bench).
bench: deps build
	CLOUDCTL_BENCH=1 $(GO) test $(GOFLAGS_TAGS) -count=1 -v -timeout 40m -run '^TestBench$$' ./tests/bench/

demo: deps build
	@./scripts/demo.sh up "$(DEMO_DIR)"

demo-down:
	@./scripts/demo.sh down "$(DEMO_DIR)"

# Installs without snapd: the binaries and a systemd unit for cloudd.
install: build
	install -D -m 0755 bin/cloudctl $(DESTDIR)/usr/local/bin/cloudctl
	install -D -m 0755 bin/cloudd $(DESTDIR)/usr/local/bin/cloudd
	install -D -m 0644 snap/local/cloudd.service $(DESTDIR)/etc/systemd/system/cloudd.service
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; start cloudd with: systemctl enable --now cloudd"

clean:
	rm -rf bin
