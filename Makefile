# msgq-pair: a sender and a receiver over one System V message queue.
# Your CXXFLAGS, CPPFLAGS and LDFLAGS are added after the project's own
# (make CXXFLAGS=-m32 LDFLAGS=-m32 test: the 32-bit build). NO_IPC_INFO=1
# builds what other systems get: no Linux IPC_INFO query, msgmax taken to be
# 8192 or more. Run `make clean` when you switch.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin

PROJECT_CXXFLAGS = -std=c++17 -O2 -g -Wall -Wextra -Wpedantic
ALL_CXXFLAGS = $(PROJECT_CXXFLAGS) $(CXXFLAGS)
PROJECT_CPPFLAGS = -MMD -MP $(if $(NO_IPC_INFO),-DMSGQ_NO_IPC_INFO)
ALL_CPPFLAGS = $(PROJECT_CPPFLAGS) $(CPPFLAGS)
# On Linux the C++ runtime is linked in: loading libstdc++ at each start cost
# half a millisecond, as much as a thousand messages (bench/README.md).
PROJECT_LDFLAGS = $(if $(filter Linux,$(shell uname -s)),-static-libstdc++ -static-libgcc)
ALL_LDFLAGS = $(PROJECT_LDFLAGS) $(LDFLAGS)

PROGRAMS = sender receiver

.PHONY: all clean test check demo bench soak install uninstall

all: $(PROGRAMS)

%: %.cpp
	$(CXX) $(ALL_CPPFLAGS) $(ALL_CXXFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LDLIBS)

tests/hostile: tests/hostile.cpp common.h
	$(CXX) $(ALL_CPPFLAGS) $(ALL_CXXFLAGS) -I. $(ALL_LDFLAGS) -o $@ $< $(LDLIBS)

bench/raw: bench/raw.cpp
	$(CXX) $(ALL_CPPFLAGS) $(ALL_CXXFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LDLIBS)

# The tests' LD_PRELOAD shims (tests/accidents.sh), built for the programs'
# ABI: a -m32 in CXXFLAGS or LDFLAGS makes them 32-bit too.
SHIMS = tests/clockstep.so tests/nomem.so tests/rmid_eperm.so
$(SHIMS): tests/%.so: tests/%.c
	$(CC) -O2 -Wall -Wextra $(sort $(filter -m%,$(CXXFLAGS) $(LDFLAGS))) $(CFLAGS) -shared -fPIC -o $@ $<

test check: all tests/hostile bench/raw $(SHIMS)
	NO_IPC_INFO=$(NO_IPC_INFO) bash tests/run.sh

soak: all tests/hostile
	SOAK=1 LIMIT=1200 NO_IPC_INFO=$(NO_IPC_INFO) bash tests/run.sh faults  # 200 random faults take minutes

demo: all
	./run_demo.sh

bench: all bench/raw
	bash bench/run.sh

install: all
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 $(PROGRAMS) $(DESTDIR)$(BINDIR)

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(PROGRAMS))

clean:
	rm -f $(PROGRAMS) tests/hostile bench/raw $(SHIMS) *.d tests/*.d bench/*.d

-include $(wildcard *.d tests/*.d bench/*.d)
