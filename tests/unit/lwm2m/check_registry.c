/* Unit tests for lib/lwm2m/registry.c, core_objects.c and ddf.c: built-in core objects, lookups,
 * custom objects, the DDF loader on inline XML (valid, quirky and refused documents) and the whole
 * OMA registry in ../shared/objects. */
#include "lwm2m/registry.h"

#include "base/err.h"
#include "../testutil.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct lw_m2m_registry *reg_default(void)
{
    struct lw_m2m_registry *r = lw_m2m_registry_new(NULL);
    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(test_ver)
{
    struct lw_m2m_ver v;
    ck_assert_int_eq(lw_m2m_ver_parse("1.2", 3, &v), 0);
    ck_assert_int_eq(v.major, 1);
    ck_assert_int_eq(v.minor, 2);
    ck_assert_int_eq(lw_m2m_ver_parse("10.255", 6, &v), 0);
    ck_assert_int_eq(v.major, 10);
    static const char *const bad[] = {"",      "1",   "1.",   ".1",   "1.2.3", "01.0",
                                      "1.256", "a.b", " 1.0", "1.0 ", "-1.0",  "1..0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(lw_m2m_ver_parse(bad[i], strlen(bad[i]), &v) == LW_EMALFORMED, "%s", bad[i]);
    ck_assert_int_lt(lw_m2m_ver_cmp(LW_M2M_VER(1, 9), LW_M2M_VER(2, 0)), 0);
    ck_assert_int_gt(lw_m2m_ver_cmp(LW_M2M_VER(1, 2), LW_M2M_VER(1, 1)), 0);
    ck_assert_int_eq(lw_m2m_ver_cmp(LW_M2M_VER(1, 1), LW_M2M_VER(1, 1)), 0);
}
END_TEST

START_TEST(test_builtin_core)
{
    struct lw_m2m_registry *r = reg_default();
    size_t n;
    const struct lw_m2m_obj_def *const *core = lw_m2m_core_objects(&n);
    ck_assert_uint_eq(lw_m2m_registry_count(r), n);
    /* every built-in table is sorted, unique and consistent */
    for (size_t i = 0; i < n; i++) {
        const struct lw_m2m_obj_def *o = core[i];
        ck_assert(o->builtin);
        for (size_t k = 0; k < o->nres; k++) {
            if (k)
                ck_assert_uint_lt(o->res[k - 1].id, o->res[k].id);
            ck_assert_int_eq(o->res[k].ops & LW_M2M_OP_E ? 1 : 0,
                             o->res[k].type == LW_M2M_T_NONE ? 1 : 0);
        }
    }
    static const uint16_t ids[] = {0, 1, 2, 3, 4, 5, 9, 21};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        ck_assert_ptr_nonnull(lw_m2m_registry_find(r, ids[i], NULL));
    ck_assert_ptr_null(lw_m2m_registry_find(r, 6, NULL));

    const struct lw_m2m_obj_def *dev = lw_m2m_registry_find(r, 3, NULL);
    ck_assert_str_eq(dev->name, "Device");
    ck_assert_int_eq(dev->ver.major, 1);
    ck_assert_int_eq(dev->ver.minor, 2);
    ck_assert(!dev->multiple);
    ck_assert(dev->mandatory);
    ck_assert_uint_eq(dev->nres, 23);
    const struct lw_m2m_res_def *reboot = lw_m2m_obj_res(dev, 4);
    ck_assert_str_eq(reboot->name, "Reboot");
    ck_assert_int_eq(reboot->ops, LW_M2M_OP_E);
    ck_assert_int_eq(reboot->type, LW_M2M_T_NONE);

    struct lw_m2m_path p = LW_M2M_PATH3(3, 0, 0);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_STRING);
    p = LW_M2M_PATH4(3, 0, 7, 1); /* Power Source Voltage: multiple */
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_INTEGER);
    p = LW_M2M_PATH4(3, 0, 0, 1); /* single resource has no instances */
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_NONE);
    p = LW_M2M_PATH3(3, 0, 13);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_TIME);
    p = LW_M2M_PATH3(5, 0, 4); /* does not exist in any version */
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_NONE);
    p = LW_M2M_PATH3(5, 0, 0);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_OPAQUE);
    p = LW_M2M_PATH3(1, 0, 24);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_OBJLNK);
    p = LW_M2M_PATH3(0, 0, 13);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_UNSIGNED);
    p = LW_M2M_PATH3(21, 0, 1);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_OPAQUE);
    p = LW_M2M_PATH2(3, 0);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_NONE);
    p = LW_M2M_PATH3(4242, 0, 0);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_NONE);

    struct lw_m2m_types t = lw_m2m_registry_types(r);
    p = LW_M2M_PATH3(4, 0, 2);
    ck_assert_int_eq(t.type_of(t.ctx, &p), LW_M2M_T_INTEGER);
    lw_m2m_registry_free(r);
}
END_TEST

START_TEST(test_versions)
{
    struct lw_m2m_registry *r = reg_default();
    struct lw_m2m_ver v10 = LW_M2M_VER(1, 0), v11 = LW_M2M_VER(1, 1), v15 = LW_M2M_VER(1, 5),
                      v20 = LW_M2M_VER(2, 0);
    const struct lw_m2m_obj_def *o = lw_m2m_registry_find(r, 1, &v10);
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(o->nres, 9);
    ck_assert_ptr_null(lw_m2m_obj_res(o, 9));
    o = lw_m2m_registry_find(r, 1, &v11);
    ck_assert_uint_eq(o->nres, 24);
    o = lw_m2m_registry_find(r, 1, NULL);
    ck_assert_int_eq(o->ver.minor, 2);
    ck_assert_ptr_null(lw_m2m_registry_find(r, 1, &v15));
    o = lw_m2m_registry_resolve(r, 1, &v15);
    ck_assert_int_eq(o->ver.minor, 2); /* newest with the same major */
    o = lw_m2m_registry_resolve(r, 1, &v11);
    ck_assert_int_eq(o->ver.minor, 1);
    o = lw_m2m_registry_resolve(r, 3, &v20);
    ck_assert_int_eq(o->ver.major, 1); /* no v2: newest overall */
    o = lw_m2m_registry_resolve(r, 21, &v10);
    ck_assert_int_eq(o->ver.major, 2);
    ck_assert_ptr_null(lw_m2m_registry_resolve(r, 7, NULL));
    lw_m2m_registry_free(r);
}
END_TEST

static int collect(void *ctx, const struct lw_m2m_obj_def *def)
{
    char *s = ctx;
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%u/%u.%u ", def->id, def->ver.major, def->ver.minor);
    strcat(s, tmp);
    return 0;
}

static int stop_at_3(void *ctx, const struct lw_m2m_obj_def *def)
{
    (void)ctx;
    return def->id == 3 ? 42 : 0;
}

START_TEST(test_foreach)
{
    struct lw_m2m_registry *r = reg_default();
    char s[512] = "";
    ck_assert_int_eq(lw_m2m_registry_foreach(r, collect, s), 0);
    ck_assert_str_eq(s, "0/1.0 0/1.2 1/1.0 1/1.1 1/1.2 2/1.1 3/1.2 4/1.3 5/1.2 9/1.0 21/2.0 ");
    ck_assert_int_eq(lw_m2m_registry_foreach(r, stop_at_3, NULL), 42);
    lw_m2m_registry_free(r);

    struct lw_m2m_registry_cfg cfg = {.no_builtin = true};
    r = lw_m2m_registry_new(&cfg);
    ck_assert_uint_eq(lw_m2m_registry_count(r), 0);
    ck_assert_int_eq(lw_m2m_registry_foreach(r, collect, s), 0);
    ck_assert_ptr_null(lw_m2m_registry_find(r, 3, NULL));
    lw_m2m_registry_free(r);
    lw_m2m_registry_free(NULL);
}
END_TEST

START_TEST(test_custom_objects)
{
    struct lw_m2m_registry *r = reg_default();
    struct lw_m2m_res_def res[] = {
        {.id = 5, .name = "Value", .ops = LW_M2M_OP_R, .type = LW_M2M_T_FLOAT, .units = "Cel"},
        {.id = 1, .name = "Reset", .ops = LW_M2M_OP_E},
        {.id = 3, .name = "List", .ops = LW_M2M_OP_RW, .multiple = true, .type = LW_M2M_T_STRING},
    };
    char name[] = "Custom";
    struct lw_m2m_obj_def def = {
        .id = 30000, .ver = {1, 0}, .name = name, .multiple = true, .res = res, .nres = 3};
    ck_assert_int_eq(lw_m2m_registry_add(r, &def), 0);
    name[0] = 'X'; /* deep copy: the registry does not see this */
    const struct lw_m2m_obj_def *o = lw_m2m_registry_find(r, 30000, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(o->name, "Custom");
    ck_assert(!o->builtin);
    ck_assert_uint_eq(o->res[0].id, 1); /* sorted */
    ck_assert_uint_eq(o->res[2].id, 5);
    ck_assert_str_eq(lw_m2m_obj_res(o, 5)->units, "Cel");
    struct lw_m2m_path p = LW_M2M_PATH4(30000, 1, 3, 9);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_STRING);

    ck_assert_int_eq(lw_m2m_registry_add(r, &def), LW_EEXIST);
    def.ver = LW_M2M_VER(1, 1);
    ck_assert_int_eq(lw_m2m_registry_add(r, &def), 0);
    ck_assert_int_eq(lw_m2m_registry_find(r, 30000, NULL)->ver.minor, 1);

    /* invalid definitions */
    struct lw_m2m_obj_def bad = def;
    bad.id = 65535;
    ck_assert_int_eq(lw_m2m_registry_add(r, &bad), LW_EINVAL);
    bad = def;
    bad.ver = LW_M2M_VER(3, 0);
    res[1].type = LW_M2M_T_STRING; /* executable with a type */
    ck_assert_int_eq(lw_m2m_registry_add(r, &bad), LW_EINVAL);
    res[1].type = LW_M2M_T_NONE;
    res[0].type = LW_M2M_T_NONE; /* readable without a type */
    ck_assert_int_eq(lw_m2m_registry_add(r, &bad), LW_EINVAL);
    res[0].type = LW_M2M_T_FLOAT;
    res[2].id = 5; /* duplicate id */
    ck_assert_int_eq(lw_m2m_registry_add(r, &bad), LW_EINVAL);
    res[2].id = 3;
    bad.name = NULL;
    ck_assert_int_eq(lw_m2m_registry_add(r, &bad), LW_EINVAL);
    lw_m2m_registry_free(r);

    /* override policy and limits */
    struct lw_m2m_registry_cfg cfg = {.allow_override = true, .max_objects = 12};
    r = lw_m2m_registry_new(&cfg);
    struct lw_m2m_obj_def dev = {
        .id = 3, .ver = {1, 2}, .name = "My Device", .res = res, .nres = 3};
    ck_assert_int_eq(lw_m2m_registry_add(r, &dev), 0);
    ck_assert_str_eq(lw_m2m_registry_find(r, 3, NULL)->name, "My Device");
    ck_assert_uint_eq(lw_m2m_registry_count(r), 11);
    ck_assert_int_eq(lw_m2m_registry_add(r, &def), 0); /* 12th */
    def.id = 30001;
    ck_assert_int_eq(lw_m2m_registry_add(r, &def), LW_ELIMIT);
    lw_m2m_registry_free(r);

    cfg = (struct lw_m2m_registry_cfg){.max_resources = 2};
    r = lw_m2m_registry_new(&cfg);
    ck_assert_int_eq(lw_m2m_registry_add(r, &def), LW_ELIMIT);
    lw_m2m_registry_free(r);
}
END_TEST

static const char good_xml[] =
    "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!-- two objects in one file -->\n"
    "<LWM2M xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
    "  <Object ObjectType=\"MODefinition\">\n"
    "    <Name> Test Sensor </Name>\n"
    "    <Description1><![CDATA[a <b>long</b> text that is skipped]]></Description1>\n"
    "    <ObjectID>32000</ObjectID>\n"
    "    <ObjectURN>urn:oma:lwm2m:x:32000:1.1</ObjectURN>\n"
    "    <LWM2MVersion>1.1</LWM2MVersion>\n"
    "    <ObjectVersion>1.1</ObjectVersion>\n"
    "    <MultipleInstances>Multiple</MultipleInstances>\n"
    "    <Mandatory>Optional</Mandatory>\n"
    "    <Resources>\n"
    "      <Item ID=\"5700\"><Name>Sensor Value</Name><Operations>R</Operations>\n"
    "        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>\n"
    "        <Type>Float</Type><RangeEnumeration></RangeEnumeration><Units>Cel</Units>\n"
    "        <Description>x</Description></Item>\n"
    "      <Item ID=\"5605\"><Name>Reset</Name><Operations>E</Operations>\n"
    "        <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>\n"
    "        <Type></Type></Item>\n"
    "      <Item ID=\"1\"><Name>Secret</Name><Operations></Operations>\n"
    "        <MultipleInstances>Multiple</MultipleInstances>\n"
    "        <Type>Unsigned Integer</Type><RangeEnumeration>0..7</RangeEnumeration></Item>\n"
    "    </Resources>\n"
    "    <Description2></Description2>\n"
    "  </Object>\n"
    "  <Object>\n"
    "    <Name>Empty</Name><ObjectID>32001</ObjectID>\n"
    "    <MultipleInstances>Single</MultipleInstances>\n"
    "  </Object>\n"
    "</LWM2M>\n";

START_TEST(test_ddf_load_mem)
{
    struct lw_m2m_registry *r = reg_default();
    char err[256] = "x";
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "t.xml", good_xml, strlen(good_xml), err, sizeof(err)), 0);
    ck_assert_str_eq(err, "");
    const struct lw_m2m_obj_def *o = lw_m2m_registry_find(r, 32000, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(o->name, "Test Sensor");
    ck_assert_str_eq(o->urn, "urn:oma:lwm2m:x:32000:1.1");
    ck_assert_int_eq(o->ver.minor, 1);
    ck_assert_int_eq(o->lwm2m.minor, 1);
    ck_assert(o->multiple);
    ck_assert(!o->mandatory);
    ck_assert_uint_eq(o->nres, 3);
    const struct lw_m2m_res_def *v = lw_m2m_obj_res(o, 5700);
    ck_assert_int_eq(v->type, LW_M2M_T_FLOAT);
    ck_assert_int_eq(v->ops, LW_M2M_OP_R);
    ck_assert(v->mandatory);
    ck_assert_ptr_null(v->range);
    ck_assert_str_eq(v->units, "Cel");
    const struct lw_m2m_res_def *e = lw_m2m_obj_res(o, 5605);
    ck_assert_int_eq(e->ops, LW_M2M_OP_E);
    ck_assert_int_eq(e->type, LW_M2M_T_NONE);
    const struct lw_m2m_res_def *s = lw_m2m_obj_res(o, 1);
    ck_assert_int_eq(s->ops, LW_M2M_OP_NONE);
    ck_assert_int_eq(s->type, LW_M2M_T_UNSIGNED);
    ck_assert(s->multiple);
    ck_assert(!s->mandatory); /* absent <Mandatory> */
    ck_assert_str_eq(s->range, "0..7");
    o = lw_m2m_registry_find(r, 32001, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(o->ver.major, 1);
    ck_assert_int_eq(o->ver.minor, 0);
    ck_assert_uint_eq(o->nres, 0);
    ck_assert_ptr_null(o->urn);

    /* the same file again: refused as a whole, nothing changes */
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "t.xml", good_xml, strlen(good_xml), err, sizeof(err)),
        LW_EEXIST);
    ck_assert_str_eq(err, "t.xml:4: object 32000 version 1.1 is already defined (loaded before); "
                          "keeping the existing one");
    lw_m2m_registry_free(r);
}
END_TEST

struct bad_case {
    const char *xml;
    int rc;
    const char *msg; /* expected message after "b.xml:" */
};

#define OBJ_HEAD                                                      \
    "<LWM2M>\n<Object>\n<Name>N</Name>\n<ObjectID>33000</ObjectID>\n" \
    "<MultipleInstances>Single</MultipleInstances>\n"
#define OBJ_BODY                                             \
    "<Object>\n<Name>N</Name>\n<ObjectID>33000</ObjectID>\n" \
    "<MultipleInstances>Single</MultipleInstances>\n"
#define ITEM(id, body) "<Item ID=\"" id "\">" body "</Item>\n"
#define RBODY(ops, type)                                                                          \
    "<Name>R</Name><Operations>" ops "</Operations><MultipleInstances>Single</MultipleInstances>" \
    "<Type>" type "</Type>"

static const struct bad_case bad_cases[] = {
    {"", LW_EMALFORMED, "1: XML error: no element found"},
    {"<LWM2M>\n<Object>\n</LWM2M>", LW_EMALFORMED, "3: XML error: mismatched tag"},
    {"<?xml version=\"1.0\"?>\n<DDFList/>", LW_EMALFORMED,
     "2: root element <DDFList> is not <LWM2M>"},
    {"<LWM2M>\n</LWM2M>", LW_EMALFORMED, "1: no <Object> element"},
    {"<LWM2M>\n<Object ObjectType=\"CommonResources\">\n</Object></LWM2M>", LW_EMALFORMED,
     "2: <Object ObjectType=\"CommonResources\"> is not an object definition (MODefinition)"},
    {"<LWM2M>\n<Object>\n<Name>N</Name>\n</Object></LWM2M>", LW_EMALFORMED,
     "2: <Object> has no <ObjectID>"},
    {"<LWM2M>\n<Object>\n<ObjectID>65535</ObjectID></Object></LWM2M>", LW_EMALFORMED,
     "2: invalid <ObjectID> \"65535\" (0..65534)"},
    {"<LWM2M>\n<Object>\n<ObjectID>0x10</ObjectID></Object></LWM2M>", LW_EMALFORMED,
     "2: invalid <ObjectID> \"0x10\" (0..65534)"},
    {"<LWM2M>\n<Object>\n<ObjectID>1</ObjectID><ObjectID>2</ObjectID></Object></LWM2M>",
     LW_EMALFORMED, "3: duplicate <ObjectID>"},
    {"<LWM2M>\n<Object>\n<ObjectID>7</ObjectID>\n<Name>N</Name></Object></LWM2M>", LW_EMALFORMED,
     "2: object 7: missing <MultipleInstances>"},
    {"<LWM2M><Object><ObjectID>7</ObjectID><Name>N</Name>\n"
     "<MultipleInstances>Many</MultipleInstances></Object></LWM2M>",
     LW_EMALFORMED, "1: object 7: invalid <MultipleInstances> \"Many\""},
    {OBJ_HEAD "<ObjectVersion>1.x</ObjectVersion></Object></LWM2M>", LW_EMALFORMED,
     "2: object 33000: invalid <ObjectVersion> \"1.x\""},
    {OBJ_HEAD "<Resources>\n" ITEM("1", RBODY("R", "")) "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: resource 1: missing <Type>"},
    {OBJ_HEAD "<Resources>\n" ITEM("1", RBODY("E", "String")) "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: resource 1: executable with <Type> \"String\""},
    {OBJ_HEAD "<Resources>\n" ITEM("1", RBODY("X", "String")) "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: resource 1: invalid <Operations> \"X\""},
    {OBJ_HEAD "<Resources>\n" ITEM("1", RBODY("R", "Double")) "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: resource 1: unknown <Type> \"Double\""},
    {OBJ_HEAD "<Resources>\n" ITEM("1", RBODY("R", "String"))
         ITEM("1", RBODY("R", "String")) "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "8: duplicate resource ID 1"},
    {OBJ_HEAD "<Resources>\n<Item>" RBODY("R", "String") "</Item></Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: <Item> without an ID attribute"},
    {OBJ_HEAD "<Resources>\n" ITEM("-1", RBODY("R", "String")) "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: invalid resource ID \"-1\" (0..65534)"},
    {OBJ_HEAD "<Resources>\n" ITEM("1", "<Operations>R</Operations>") "</Resources></Object>"
                                                                      "</LWM2M>",
     LW_EMALFORMED, "7: resource 1: missing <Name>"},
    {OBJ_HEAD "<Resources>\n" ITEM("1", "<Name>x<b/></Name>") "</Resources></Object></LWM2M>",
     LW_EMALFORMED, "7: unexpected element <b> inside <Name>"},
    {"<?xml version=\"1.0\"?>\n<!DOCTYPE LWM2M [<!ENTITY a \"aaaa\">]>\n<LWM2M/>", LW_EMALFORMED,
     "2: DOCTYPE declarations are not allowed in DDF files"},
    {"<LWM2M>\n<Object>\n<Name>N</Name>\n<ObjectID>3</ObjectID>\n"
     "<ObjectVersion>1.2</ObjectVersion><MultipleInstances>Single</MultipleInstances>"
     "</Object></LWM2M>",
     LW_EEXIST, "2: object 3 version 1.2 is already defined (built in); keeping the existing one"},
    {OBJ_HEAD "</Object>\n" OBJ_BODY "</Object></LWM2M>", LW_EEXIST,
     "7: object 33000 version 1.0 is already defined (twice in this file); keeping the existing "
     "one"},
    /* all-or-nothing: the first object is fine, the second is not; 33000 must stay absent */
    {OBJ_HEAD "</Object>\n<Object>\n</Object></LWM2M>", LW_EMALFORMED,
     "7: <Object> has no <ObjectID>"},
    {"<LWM2M>\n<Object>\n<Name>" /* 600 chars > max_string 512 */
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxx"
     "</Name></Object></LWM2M>",
     LW_ELIMIT, "3: <Name> longer than 512 bytes"},
    {"<LWM2M>\n<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a></a></a></a></a></a></a></a>"
     "</a></a></a></a></a></a></a></a></a></a></a></LWM2M>",
     LW_ELIMIT, "2: elements nested deeper than 16"},
};

START_TEST(test_ddf_refused)
{
    const struct bad_case *c = &bad_cases[_i];
    struct lw_m2m_registry *r = reg_default();
    char err[512], want[512];
    size_t before = lw_m2m_registry_count(r);
    int rc = lw_m2m_registry_load_mem(r, "b.xml", c->xml, strlen(c->xml), err, sizeof(err));
    snprintf(want, sizeof(want), "b.xml:%s", c->msg);
    ck_assert_msg(rc == c->rc, "case %d: rc %d, want %d (%s)", _i, rc, c->rc, err);
    ck_assert_str_eq(err, want);
    ck_assert_uint_eq(lw_m2m_registry_count(r), before);
    ck_assert_ptr_null(lw_m2m_registry_find(r, 33000, NULL));
    lw_m2m_registry_free(r);
}
END_TEST

START_TEST(test_ddf_limits)
{
    char err[256];
    /* file size */
    struct lw_m2m_registry_cfg cfg = {.max_file_size = 100};
    struct lw_m2m_registry *r = lw_m2m_registry_new(&cfg);
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "g.xml", good_xml, strlen(good_xml), err, sizeof(err)),
        LW_ELIMIT);
    ck_assert_str_eq(err, "g.xml: file larger than 100 bytes");
    lw_m2m_registry_free(r);
    /* resources per object */
    cfg = (struct lw_m2m_registry_cfg){.max_resources = 2};
    r = lw_m2m_registry_new(&cfg);
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "g.xml", good_xml, strlen(good_xml), err, sizeof(err)),
        LW_ELIMIT);
    ck_assert_str_eq(err, "g.xml:21: more than 2 resources in one object");
    lw_m2m_registry_free(r);
    /* objects per file */
    cfg = (struct lw_m2m_registry_cfg){.max_file_objects = 1};
    r = lw_m2m_registry_new(&cfg);
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "g.xml", good_xml, strlen(good_xml), err, sizeof(err)),
        LW_ELIMIT);
    ck_assert_str_eq(err, "g.xml:27: more than 1 <Object> elements in one file");
    lw_m2m_registry_free(r);
    /* override allowed */
    cfg = (struct lw_m2m_registry_cfg){.allow_override = true};
    r = lw_m2m_registry_new(&cfg);
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "g.xml", good_xml, strlen(good_xml), err, sizeof(err)), 0);
    ck_assert_int_eq(
        lw_m2m_registry_load_mem(r, "g.xml", good_xml, strlen(good_xml), err, sizeof(err)), 0);
    lw_m2m_registry_free(r);
}
END_TEST

struct reports {
    int n;
    int rc[4];
    char last[512];
};

static void on_report(void *ctx, const char *path, int rc, const char *msg)
{
    struct reports *r = ctx;
    (void)path;
    if (r->n < 4)
        r->rc[r->n] = rc;
    r->n++;
    snprintf(r->last, sizeof(r->last), "%s", msg);
}

START_TEST(test_ddf_file_errors)
{
    struct lw_m2m_registry *r = reg_default();
    char err[256];
    ck_assert_int_eq(lw_m2m_registry_load_file(r, "/nonexistent/x.xml", err, sizeof(err)),
                     LW_ENOENT);
    ck_assert_str_eq(err, "/nonexistent/x.xml: cannot open: No such file or directory");
    struct lw_m2m_load_stats st;
    ck_assert_int_eq(lw_m2m_registry_load_dir(r, "/nonexistent", NULL, NULL, &st, err, sizeof(err)),
                     LW_ENOENT);
    ck_assert_uint_eq(st.loaded + st.refused, 0);

    /* a directory with a good and a bad file, plus a non-.xml file that is ignored */
    char dir[] = "/tmp/lw_ddf_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/a.xml", dir);
    FILE *f = fopen(path, "w");
    fputs(good_xml, f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/b.xml", dir);
    f = fopen(path, "w");
    fputs("<LWM2M>\n<Object>\n</Object>\n</LWM2M>\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/c.xsd", dir);
    f = fopen(path, "w");
    fputs("junk", f);
    fclose(f);
    ck_assert_int_eq(lw_m2m_registry_load_dir(r, dir, NULL, NULL, &st, err, sizeof(err)),
                     LW_EMALFORMED);
    ck_assert_uint_eq(st.loaded, 1);
    ck_assert_uint_eq(st.refused, 1);
    char want[512];
    snprintf(want, sizeof(want), "%s/b.xml:2: <Object> has no <ObjectID>", dir);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_nonnull(lw_m2m_registry_find(r, 32000, NULL));
    /* streaming read of the same file through load_file */
    snprintf(path, sizeof(path), "%s/a.xml", dir);
    struct lw_m2m_registry *r2 = lw_m2m_registry_new(NULL);
    ck_assert_int_eq(lw_m2m_registry_load_file(r2, path, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(lw_m2m_registry_find(r2, 32001, NULL));
    lw_m2m_registry_free(r2);
    /* the size limit applies while streaming */
    struct lw_m2m_registry_cfg small = {.max_file_size = 1000};
    r2 = lw_m2m_registry_new(&small);
    ck_assert_int_eq(lw_m2m_registry_load_file(r2, path, err, sizeof(err)), LW_ELIMIT);
    snprintf(want, sizeof(want), "%s: file larger than 1000 bytes", path);
    ck_assert_str_eq(err, want);
    lw_m2m_registry_free(r2);
    /* per-file reports */
    struct reports rep = {0};
    r2 = lw_m2m_registry_new(NULL);
    lw_m2m_registry_load_dir(r2, dir, on_report, &rep, NULL, NULL, 0);
    ck_assert_int_eq(rep.n, 2);
    ck_assert_int_eq(rep.rc[0], 0);
    ck_assert_int_eq(rep.rc[1], LW_EMALFORMED);
    ck_assert(strstr(rep.last, "b.xml:2: <Object> has no <ObjectID>"));
    lw_m2m_registry_free(r2);
    static const char *const names[] = {"a.xml", "b.xml", "c.xsd"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        remove(path);
    }
    rmdir(dir);
    lw_m2m_registry_free(r);
}
END_TEST

/* file:line: prefix check of a refusal message */
static bool names_file_line(const char *msg, const char *path)
{
    size_t pl = strlen(path);
    if (strncmp(msg, path, pl) || msg[pl] != ':')
        return false;
    const char *p = msg + pl + 1;
    if (*p < '1' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9')
        p++;
    return p[0] == ':' && p[1] == ' ' && p[2];
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(test_whole_registry)
{
    const char *shared = lw_test_shared("objects");
    if (!shared)
        return;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", shared);
    DIR *dh = opendir(dir);
    ck_assert_ptr_nonnull(dh);
    char *names[1024];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dh)) && n < 1024)
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    closedir(dh);
    qsort(names, n, sizeof(*names), name_cmp);

    struct lw_m2m_registry *r = reg_default();
    size_t loaded = 0, refused = 0, kept_builtin = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4200], err[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        int rc = lw_m2m_registry_load_file(r, path, err, sizeof(err));
        if (rc == 0) {
            loaded++;
            ck_assert_str_eq(err, "");
        } else {
            refused++;
            kept_builtin += rc == LW_EEXIST;
            ck_assert_msg(names_file_line(err, path), "message without file:line: %s", err);
            ck_assert_msg(rc == LW_EMALFORMED || rc == LW_EEXIST, "%s: rc %d", err, rc);
            printf("ddf refused: %s\n", err + strlen(dir) + 1);
        }
        free(names[i]);
    }
    printf("ddf registry: %zu files, %zu loaded, %zu refused (%zu keep a built-in), %zu "
           "definitions\n",
           n, loaded, refused, kept_builtin, lw_m2m_registry_count(r));
    ck_assert_uint_eq(loaded + refused, n);
    ck_assert_uint_ge(n, 300);
    ck_assert_uint_ge(loaded, 300);
    ck_assert_uint_eq(kept_builtin, 8); /* 0 1 2 3 4 5 9 21 */

    /* spot checks on loaded definitions */
    const struct lw_m2m_obj_def *t = lw_m2m_registry_find(r, 3303, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "Temperature");
    struct lw_m2m_path p = LW_M2M_PATH3(3303, 0, 5700);
    ck_assert_int_eq(lw_m2m_registry_type_of(r, &p), LW_M2M_T_FLOAT);
    ck_assert(lw_m2m_registry_find(r, 3, NULL)->builtin);

    /* the built-in core tables agree with the registry files on ids, types, operations and
     * multiplicity (the files are the facts the tables were written from) */
    size_t ncore;
    const struct lw_m2m_obj_def *const *core = lw_m2m_core_objects(&ncore);
    struct lw_m2m_registry_cfg cfg = {.no_builtin = true};
    struct lw_m2m_registry *files = lw_m2m_registry_new(&cfg);
    for (size_t i = 0; i < ncore; i++) {
        const struct lw_m2m_obj_def *b = core[i];
        char path[4200], err[512];
        snprintf(path, sizeof(path), "%s/%u.xml", dir, b->id);
        if (!lw_m2m_registry_find(files, b->id, NULL))
            ck_assert_int_eq(lw_m2m_registry_load_file(files, path, err, sizeof(err)), 0);
        const struct lw_m2m_obj_def *x = lw_m2m_registry_find(files, b->id, &b->ver);
        if (!x)
            continue; /* older versions: not in the current files */
        ck_assert_uint_eq(x->nres, b->nres);
        ck_assert_int_eq(x->multiple, b->multiple);
        ck_assert_int_eq(x->mandatory, b->mandatory);
        for (size_t k = 0; k < b->nres; k++) {
            ck_assert_uint_eq(x->res[k].id, b->res[k].id);
            ck_assert_msg(x->res[k].type == b->res[k].type && x->res[k].ops == b->res[k].ops &&
                              x->res[k].multiple == b->res[k].multiple &&
                              x->res[k].mandatory == b->res[k].mandatory,
                          "object %u resource %u differs", b->id, b->res[k].id);
        }
    }
    lw_m2m_registry_free(files);

    /* load_dir over the same directory agrees (.xml files only) */
    struct lw_m2m_registry *r2 = reg_default();
    struct lw_m2m_load_stats st;
    char err[512];
    lw_m2m_registry_load_dir(r2, dir, NULL, NULL, &st, err, sizeof(err));
    ck_assert_uint_eq(st.loaded, loaded);
    ck_assert_uint_eq(lw_m2m_registry_count(r2), lw_m2m_registry_count(r));
    lw_m2m_registry_free(r2);
    lw_m2m_registry_free(r);
}
END_TEST

Suite *suite_registry(void);
Suite *suite_registry(void)
{
    Suite *s = suite_create("lwm2m_registry");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, test_ver);
    tcase_add_test(tc, test_builtin_core);
    tcase_add_test(tc, test_versions);
    tcase_add_test(tc, test_foreach);
    tcase_add_test(tc, test_custom_objects);
    tcase_add_test(tc, test_ddf_load_mem);
    tcase_add_loop_test(tc, test_ddf_refused, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, test_ddf_limits);
    tcase_add_test(tc, test_ddf_file_errors);
    suite_add_tcase(s, tc);
    TCase *all = tcase_create("whole_registry");
    tcase_set_timeout(all, 60);
    tcase_add_test(all, test_whole_registry);
    suite_add_tcase(s, all);
    return s;
}
