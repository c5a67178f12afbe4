# tests/proxy/: the API fault proxy kf-faultproxy (included by Makefile.am).
