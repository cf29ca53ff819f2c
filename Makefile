# The two commands of the README: `make run` starts the platform, `make test` runs every test.
GO ?= go
BIN := bin/dyno
DATA ?= data

.PHONY: build run test bench clean

build:
	CGO_ENABLED=1 $(GO) build -o $(BIN) ./cmd/dyno

run: build
	$(BIN) server --data-dir $(DATA)

test:
	CGO_ENABLED=1 $(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -count=1 -timeout 30m ./...

bench: build
	bash bench/scale.sh

clean:
	rm -rf bin
