# The two front-door commands (see README.md):
#   make run    build everything, then serve the demo site with the seeds' apps
#               (demo.toml: ctime, hello and mini_frame where html/index.html
#               links them)
#   make test   build everything (without LTO), then run every test
CARGO ?= cargo
HOST := ./target/release/host

C_APPS := target/c-apps
CFLAGS_APP := -shared -fPIC -O2 -Wall -Wextra -I plugin-api/c

.PHONY: build run test clippy c-apps

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

# The apps written against the C interface (c-apps/, and bench's C hello),
# into $(C_APPS); C++ and Go ones only where those toolchains are installed.
c-apps:
	@mkdir -p $(C_APPS)
	@for src in c-apps/*.c; do \
		cc -std=c11 $(CFLAGS_APP) -o $(C_APPS)/lib$$(basename $$src .c)_c.so $$src || exit 1; \
	done
	cc -std=c11 $(CFLAGS_APP) -o $(C_APPS)/libbench_hello_c.so bench/apps/hello.c
	@if command -v c++ >/dev/null; then for src in c-apps/*.cpp; do \
		c++ -std=c++17 $(CFLAGS_APP) -o $(C_APPS)/lib$$(basename $$src .cpp)_cpp.so $$src || exit 1; \
	done; else echo "c-apps: no c++, C++ examples skipped"; fi
	@if command -v go >/dev/null; then for dir in c-apps/go-*/; do \
		name=$$(basename $$dir); \
		(cd $$dir && CGO_CFLAGS="-O2 -I$(CURDIR)/plugin-api/c" go build -buildmode=c-shared \
			-o $(CURDIR)/$(C_APPS)/lib$${name#go-}_go.so .) || exit 1; \
	done; else echo "c-apps: no go, Go examples skipped"; fi
	@echo "built:" $(C_APPS)/*.so

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
