# clawpatrol: `make demo` shows it working, `make test` runs every test.
GO       ?= go
BIN      := bin/clawpatrol
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: build test test-deps adversarial bench lint demo clean

build:
	CGO_ENABLED=1 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) .

# Installs what the tests need when missing (as root; otherwise prints the
# command and fails), then runs every test.
test: test-deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m -skip TestAdversarialSuite ./...
	$(MAKE) adversarial

# A hostile agent inside clawpatrol tries every known way out; the report
# (held / escaped per probe) is printed, and an undocumented escape fails.
adversarial: test-deps
	$(GO) test -count=1 -timeout 10m -run TestAdversarialSuite -v ./e2e/

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
