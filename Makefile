# The two commands of the README: `make run` starts the platform, `make test` runs every test.
GO ?= go
BIN := bin/dyno
DATA ?= data
# Dynos get a seccomp filter when libseccomp's headers are there (Debian: libseccomp-dev).
TAGS ?= $(shell pkg-config --exists libseccomp 2>/dev/null && echo seccomp)
export CGO_ENABLED = 1
export DYNO_BUILD_TAGS = $(TAGS)

.PHONY: build run test bench clean

build:
	@[ -n "$(TAGS)" ] || echo "warning: libseccomp-dev is not installed: dynos will run without a seccomp filter (apt-get install libseccomp-dev pkg-config)"
	$(GO) build -tags "$(TAGS)" -o $(BIN) ./cmd/dyno

run: build
	$(BIN) server --data-dir $(DATA)

test:
	$(GO) vet -tags "$(TAGS)" ./...
	$(GO) test -tags "$(TAGS)" -count=1 -timeout 30m ./...

bench: build
	bash bench/scale.sh

clean:
	rm -rf bin
