# storage/: the metadata persistence library (included by Makefile.am): the
# journal format, the metadata store and its in-memory index, the directory
# and raw-LUN backends (the latter on scsi/) and the opening of either from
# one address (store), the libblkid checks.
noinst_LIBRARIES += storage/libkfstorage.a
storage_libkfstorage_a_SOURCES = \
	storage/journal.c storage/journal.h \
	storage/backend.h storage/backend_dir.c \
	storage/backend_lun.c storage/backend_lun.h \
	storage/store.c storage/store.h \
	storage/index.c storage/index.h \
	storage/metastore.c storage/metastore.h \
	storage/blkdev.c storage/blkdev.h

EXTRA_DIST += storage/FORMAT.md
