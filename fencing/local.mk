# fencing/: sources, programs and tests of this subsystem (included by Makefile.am).
