# msgq-pair: a sender and a receiver over one System V message queue.
# Your CXXFLAGS, CPPFLAGS and LDFLAGS are added after the project's own.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin

PROJECT_CXXFLAGS = -std=c++17 -O2 -g -Wall -Wextra -Wpedantic
ALL_CXXFLAGS = $(PROJECT_CXXFLAGS) $(CXXFLAGS)
ALL_CPPFLAGS = -MMD -MP $(CPPFLAGS)

PROGRAMS = sender receiver

.PHONY: all clean test check demo bench soak install uninstall

all: $(PROGRAMS)

%: %.cpp
	$(CXX) $(ALL_CPPFLAGS) $(ALL_CXXFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

tests/hostile: tests/hostile.cpp common.h
	$(CXX) $(ALL_CPPFLAGS) $(ALL_CXXFLAGS) -I. $(LDFLAGS) -o $@ $< $(LDLIBS)

bench/raw: bench/raw.cpp
	$(CXX) $(ALL_CPPFLAGS) $(ALL_CXXFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

test check: all tests/hostile bench/raw
	bash tests/run.sh

soak: all tests/hostile
	SOAK=1 LIMIT=1200 bash tests/run.sh faults  # 200 random faults take minutes

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
	rm -f $(PROGRAMS) tests/hostile bench/raw *.d tests/*.d bench/*.d

-include $(wildcard *.d tests/*.d bench/*.d)
