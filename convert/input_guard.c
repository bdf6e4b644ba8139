/* convert/input_guard.c: did IN change while convert read it? */
#include <string.h>

#include "common/mapguard.h"
#include "convert/convert_internal.h"
#include "formats/modeldir.h"

qt_status qt_conv_check_input(const qt_conv *c, char *errmsg)
{
    const char *name = NULL;
    /* a read past the end of a shrunken shard (SIGBUS turned into zeros) */
    if (qt_mapguard_tripped(&name))
        return qt_set_err(errmsg, QT_ERR_IO,
                          "input '%s' changed while it was read (truncated or rewritten by "
                          "another process): no output written",
                          name ? name : c->o.in);
    /* a shard rewritten in place: its size, inode or mtime differ */
    for (size_t i = 0; i < qt_modeldir_n_shards(c->md); i++) {
        const qt_st_reader *r = qt_modeldir_shard(c->md, i);
        if (qt_st_reader_check_unchanged(r, NULL) != QT_OK)
            return qt_set_err(errmsg, QT_ERR_IO,
                              "input '%s' changed while it was read (truncated or rewritten by "
                              "another process): no output written",
                              qt_st_reader_path(r));
    }
    return QT_OK;
}
