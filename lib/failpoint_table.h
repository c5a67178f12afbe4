/* failpoint_table: the table of fault points (placeholder). */
#pragma once
