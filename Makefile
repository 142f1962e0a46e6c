# The two front-door commands (see README.md):
#   make run    build everything, then serve the demo site with the seeds' apps
#               (demo.toml: ctime, hello and mini_frame where html/index.html
#               links them)
#   make test   build everything (without LTO), then run every test
CARGO ?= cargo
HOST := ./target/release/host

.PHONY: build run test clippy

# Builds the workspace and puts each plugin at ./plugins/lib<name>.so. The
# copy gets a fresh inode (--remove-destination), so a running host that has
# the old file open is never overwritten in place.
build:
	$(CARGO) build --release --workspace
	@for dir in plugins/*/; do \
		name=$$(basename "$$dir"); \
		cp --remove-destination "target/release/lib$$name.so" "plugins/lib$$name.so"; \
	done
	@echo "built: $(HOST) and" plugins/lib*.so

run: build
	$(HOST) --config demo.toml

# The tests build with the test-release profile (release without LTO, see
# Cargo.toml): the host and plugins they run are in target/test-release.
# host/tests/install-deps first installs what some tests need (Chromium)
# where it can; those tests skip, saying why, where it cannot.
test:
	bash host/tests/install-deps
	$(CARGO) build --profile test-release --workspace
	$(CARGO) test --profile test-release --workspace

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
