# tests/lincheck/: the history checker kf-lincheck (included by Makefile.am).
