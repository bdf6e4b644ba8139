/*
 * formats/formats_internal.h: declarations shared between files of the
 * formats/ module only (STYLE.md 5). Nothing outside formats/ and its
 * tests may include this header: it exposes cJSON, which stays inside
 * formats/.
 */
#ifndef QT_FORMATS_INTERNAL_H
#define QT_FORMATS_INTERNAL_H

#include <cJSON.h>

#include "formats/modeldir.h"

/* The parsed config.json of md (a JSON object), or NULL when the model has
 * none. Borrowed and read-only, valid until qt_modeldir_close; copy it
 * (cJSON_Duplicate) to modify, e.g. to add quantization_config. */
const cJSON *qt_modeldir_config_json(const qt_modeldir *md);

/* cJSON allocates through qt_malloc (formats/json.c installs the hooks).
 * qt_json_alloc_reset() installs them once and clears this thread's
 * failure flag; qt_json_alloc_failed() says whether a cJSON allocation of
 * this thread failed since (cJSON's Add / Create calls drop items silently
 * on failure: check it before using a tree that was built). */
void qt_json_alloc_reset(void);
bool qt_json_alloc_failed(void);

#endif /* QT_FORMATS_INTERNAL_H */
