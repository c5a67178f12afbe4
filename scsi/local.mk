# scsi/: SCSI-3 persistent reservations over iSCSI (included by Makefile.am):
# the commands with a deadline each, the key scheme (scsi_pr), and the
# reservation scheme kubefence runs on one LUN — join, keep, fence, the
# verdict on our own writes (scsi_resv).  Both the `scsi-pr` fence method
# (fencing/) and the raw-LUN journal backend (storage/) stand on it; it uses
# lib/, libiscsi and OpenSSL only.
noinst_LIBRARIES += scsi/libkfscsi.a
scsi_libkfscsi_a_SOURCES = \
	scsi/scsi_pr.c scsi/scsi_pr.h \
	scsi/scsi_resv.c scsi/scsi_resv.h
