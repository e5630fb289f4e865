/* cnode: the umbrella header.  Include this one. */
#ifndef CNODE_H
#define CNODE_H

#include "cnode/common.h"
#include "cnode/log.h"
#include "cnode/term.h"
#include "cnode/runtime.h"
#include "cnode/supervisor.h"
#include "cnode/dist.h"
#include "cnode/node.h"
#include "cnode/cluster.h"
#include "cnode/export.h"

#endif /* CNODE_H */
