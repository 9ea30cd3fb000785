# clawpatrol: `make demo` shows it working, `make test` runs every test.
GO       ?= go
BIN      := bin/clawpatrol
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: build test test-deps bench lint demo clean

build:
	CGO_ENABLED=1 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) .

# Installs what the tests need when missing (as root; otherwise prints the
# command and fails), then runs every test.
test: test-deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m ./...

test-deps:
	@scripts/deps.sh test

bench: build
	@scripts/deps.sh bench
	@scripts/bench.sh

lint:
	gofmt -l . | (! grep .) || (echo "gofmt: the files above need formatting"; exit 1)
	$(GO) vet ./...

demo: build
	@scripts/demo.sh

clean:
	rm -rf bin
