/* failpoint: named fault points compiled into every program (placeholder). */
#pragma once
