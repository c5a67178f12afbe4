# fencing/: the Kubernetes fence methods, the pipeline and self-fencing (included by Makefile.am).
