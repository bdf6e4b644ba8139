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

#endif /* QT_FORMATS_INTERNAL_H */
