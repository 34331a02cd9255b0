# The few targets people expect. `make help` lists them.
GO        ?= go
BIN       ?= bin
PROTOC_GEN_GO_VERSION    := v1.36.12
STATICCHECK_VERSION      := v0.8.2
PROTOACTOR_VERSION       := $(shell $(GO) list -m -f '{{.Version}}' github.com/asynkron/protoactor-go)

.PHONY: help build run test test-integration bench bench-http proto tools lint cassandra-up cassandra-down etcd-up etcd-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# -buildvcs=auto: stamp the git revision (checkin_build_info) even where
# GOFLAGS turns stamping off.
build: ## build the binaries into ./bin
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

run: ## run one node on the embedded store (./data)
	$(GO) run ./cmd/checkin

test: ## run every test (CQL and cluster tests need CHECKIN_TEST_CQL_HOSTS and CHECKIN_TEST_ETCD_ENDPOINTS, see README)
	$(GO) test -race ./...
	@if [ -n "$$CHECKIN_TEST_CQL_HOSTS" ]; then \
		echo "== end-to-end tests again on store=scylla ($$CHECKIN_TEST_CQL_HOSTS)"; \
		CHECKIN_TEST_STORE=scylla $(GO) test -race -count=1 -skip '^TestCluster$$' ./cmd/checkin/; \
	else \
		echo "#####################################################################"; \
		echo "## SKIPPED: the Scylla/Cassandra tests (CHECKIN_TEST_CQL_HOSTS unset)"; \
		echo "## Run them with a real node: .ci/cassandra-up, then"; \
		echo "##   CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 make test"; \
		echo "#####################################################################"; fi

test-integration: cassandra-up etcd-up ## start the local Cassandra node and etcd and run every test against them
	CHECKIN_TEST_CQL_HOSTS=127.0.0.1:9042 CHECKIN_TEST_CQL_TLS_CA_FILE=$(CURDIR)/.cache/cassandra/run/tls/node.pem \
		CHECKIN_TEST_ETCD_ENDPOINTS=127.0.0.1:2379 $(MAKE) test

bench: ## Go benchmarks of the hot paths (benchstat-friendly)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./... | tee bench.txt

bench-http: ## bare Fiber vs naive design vs checkin over HTTP, table + sweep + plot (10-15 min)
	cmd/checkin-load/scripts/bench-http.sh

# The generators tools installed come first on PATH, so protoc finds them
# (and not another version) whatever the caller's PATH holds.
proto: tools ## regenerate messages/*.pb.go from messages/checkin.proto
	PATH="$$(d=$$($(GO) env GOBIN); echo $${d:-$$($(GO) env GOPATH)/bin}):$$PATH" $(GO) generate ./messages

tools: ## install the pinned code generators (protoc itself: apt-get install protobuf-compiler)
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install github.com/asynkron/protoactor-go/protobuf/protoc-gen-go-grain@$(PROTOACTOR_VERSION)

lint: ## gofmt, go vet and staticcheck (pinned; fetched by go run on first use)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

cassandra-up: ## start a local Cassandra node for the CQL tests (127.0.0.1:9042)
	.ci/cassandra-up

cassandra-down: ## stop it
	.ci/cassandra-down

etcd-up: ## start a local etcd for the cluster tests (127.0.0.1:2379; needs the etcd binary)
	.ci/etcd-up

etcd-down: ## stop it
	.ci/etcd-down
