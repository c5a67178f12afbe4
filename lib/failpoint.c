/* failpoint: placeholder. */
#include "config.h"

#include "failpoint.h"
