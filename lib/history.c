/* history: placeholder until the writer lands (see history.h). */
#include "config.h"

#include "history.h"
