/* lib/lwm2m/core_objects.c - built-in definitions of the core objects a server must understand:
 * 0 Security, 1 Server, 2 Access Control, 3 Device, 4 Connectivity Monitoring, 5 Firmware Update,
 * 9 Software Management and 21 OSCORE, in their current registry versions, plus the older versions
 * whose resource sets are known prefixes of the current ones (0 v1.0: resources 0-12; 1 v1.0:
 * 0-8; 1 v1.1: 0-23).
 *
 * Written for this project as const tables (ids, names, operations, multiplicity, types, ranges
 * and units as documented for the OMA registry); they are not generated from the XML files. Empty
 * operations in objects 0 and 21 mean "bootstrap only". Const data: any thread.
 */
#include "registry.h"

#include "base/util.h"

#define S    false
#define M    true
#define MAND true
#define OPT  false

#define RES(i, nm, op, mul, man, ty, rng, un)                                                      \
    {                                                                                              \
        .id = (i), .name = (nm), .ops = (op), .multiple = (mul), .mandatory = (man), .type = (ty), \
        .range = (rng), .units = (un)                                                              \
    }

#define NOP LW_M2M_OP_NONE
#define R   LW_M2M_OP_R
#define W   LW_M2M_OP_W
#define RW  LW_M2M_OP_RW
#define E   LW_M2M_OP_E

#define T_STR  LW_M2M_T_STRING
#define T_INT  LW_M2M_T_INTEGER
#define T_UINT LW_M2M_T_UNSIGNED
#define T_BOOL LW_M2M_T_BOOLEAN
#define T_OPQ  LW_M2M_T_OPAQUE
#define T_TIME LW_M2M_T_TIME
#define T_LNK  LW_M2M_T_OBJLNK
#define T_EXE  LW_M2M_T_NONE

/* Object 0, LwM2M Security v1.2 (v1.0 is resources 0..12). Bootstrap-only: no operations. */
static const struct lw_m2m_res_def res0[] = {
    RES(0, "LWM2M Server URI", NOP, S, MAND, T_STR, "0..255", NULL),
    RES(1, "Bootstrap-Server", NOP, S, MAND, T_BOOL, NULL, NULL),
    RES(2, "Security Mode", NOP, S, MAND, T_INT, "0..4", NULL),
    RES(3, "Public Key or Identity", NOP, S, MAND, T_OPQ, NULL, NULL),
    RES(4, "Server Public Key", NOP, S, MAND, T_OPQ, NULL, NULL),
    RES(5, "Secret Key", NOP, S, MAND, T_OPQ, NULL, NULL),
    RES(6, "SMS Security Mode", NOP, S, OPT, T_INT, "0..255", NULL),
    RES(7, "SMS Binding Key Parameters", NOP, S, OPT, T_OPQ, "6", NULL),
    RES(8, "SMS Binding Secret Key(s)", NOP, S, OPT, T_OPQ, "16,32,48", NULL),
    RES(9, "LwM2M Server SMS Number", NOP, S, OPT, T_STR, NULL, NULL),
    RES(10, "Short Server ID", NOP, S, OPT, T_INT, "1..65534", NULL),
    RES(11, "Client Hold Off Time", NOP, S, OPT, T_INT, NULL, "s"),
    RES(12, "Bootstrap-Server Account Timeout", NOP, S, OPT, T_INT, NULL, "s"),
    RES(13, "Matching Type", NOP, S, OPT, T_UINT, "0..3", NULL),
    RES(14, "SNI", NOP, S, OPT, T_STR, NULL, NULL),
    RES(15, "Certificate Usage", NOP, S, OPT, T_UINT, "0..3", NULL),
    RES(16, "DTLS/TLS Ciphersuite", NOP, M, OPT, T_UINT, NULL, NULL),
    RES(17, "OSCORE Security Mode", NOP, S, OPT, T_LNK, NULL, NULL),
    RES(18, "Groups To Use by Client", NOP, M, OPT, T_UINT, "0..65535", NULL),
    RES(19, "Signature Algorithms Supported by Server", NOP, M, OPT, T_UINT, "0..65535", NULL),
    RES(20, "Signature Algorithms To Use by Client", NOP, M, OPT, T_UINT, "0..65535", NULL),
    RES(21, "Signature Algorithm Certs Supported by Server", NOP, M, OPT, T_UINT, "0..65535", NULL),
    RES(22, "TLS 1.3 Features To Use by Client", NOP, S, OPT, T_UINT, "0..65535", NULL),
    RES(23, "TLS Extensions Supported by Server", NOP, S, OPT, T_UINT, "0..65535", NULL),
    RES(24, "TLS Extensions To Use by Client", NOP, S, OPT, T_UINT, "0..65535", NULL),
    RES(25, "Secondary LwM2M Server URI", NOP, M, OPT, T_STR, "0..255", NULL),
    RES(26, "MQTT Server", NOP, S, OPT, T_LNK, NULL, NULL),
    RES(27, "LwM2M COSE Security", NOP, M, OPT, T_LNK, NULL, NULL),
    RES(28, "RDS Destination Port", NOP, S, OPT, T_INT, "0..15", NULL),
    RES(29, "RDS Source Port", NOP, S, OPT, T_INT, "0..15", NULL),
    RES(30, "RDS Application ID", NOP, S, OPT, T_STR, NULL, NULL),
};

/* Object 1, LwM2M Server v1.2 (v1.0 is resources 0..8, v1.1 is 0..23). */
static const struct lw_m2m_res_def res1[] = {
    RES(0, "Short Server ID", R, S, MAND, T_INT, "1..65534", NULL),
    RES(1, "Lifetime", RW, S, MAND, T_INT, NULL, "s"),
    RES(2, "Default Minimum Period", RW, S, OPT, T_INT, NULL, "s"),
    RES(3, "Default Maximum Period", RW, S, OPT, T_INT, NULL, "s"),
    RES(4, "Disable", E, S, OPT, T_EXE, NULL, NULL),
    RES(5, "Disable Timeout", RW, S, OPT, T_INT, NULL, "s"),
    RES(6, "Notification Storing When Disabled or Offline", RW, S, MAND, T_BOOL, NULL, NULL),
    RES(7, "Binding", RW, S, MAND, T_STR, NULL, NULL),
    RES(8, "Registration Update Trigger", E, S, MAND, T_EXE, NULL, NULL),
    RES(9, "Bootstrap-Request Trigger", E, S, OPT, T_EXE, NULL, NULL),
    RES(10, "APN Link", RW, S, OPT, T_LNK, NULL, NULL),
    RES(11, "TLS-DTLS Alert Code", R, S, OPT, T_UINT, "0..255", NULL),
    RES(12, "Last Bootstrapped", R, S, OPT, T_TIME, NULL, NULL),
    RES(13, "Registration Priority Order", R, S, OPT, T_UINT, NULL, NULL),
    RES(14, "Initial Registration Delay Timer", RW, S, OPT, T_UINT, NULL, "s"),
    RES(15, "Registration Failure Block", R, S, OPT, T_BOOL, NULL, NULL),
    RES(16, "Bootstrap on Registration Failure", R, S, OPT, T_BOOL, NULL, NULL),
    RES(17, "Communication Retry Count", RW, S, OPT, T_UINT, NULL, NULL),
    RES(18, "Communication Retry Timer", RW, S, OPT, T_UINT, NULL, "s"),
    RES(19, "Communication Sequence Delay Timer", RW, S, OPT, T_UINT, NULL, "s"),
    RES(20, "Communication Sequence Retry Count", RW, S, OPT, T_UINT, NULL, NULL),
    RES(21, "Trigger", RW, S, OPT, T_BOOL, NULL, NULL),
    RES(22, "Preferred Transport", RW, S, OPT, T_STR, NULL, NULL),
    RES(23, "Mute Send", RW, S, OPT, T_BOOL, NULL, NULL),
    RES(24, "Alternate APN Links", RW, M, OPT, T_LNK, NULL, NULL),
    RES(25, "Supported Server Versions", RW, M, OPT, T_STR, NULL, NULL),
    RES(26, "Default Notification Mode", RW, S, OPT, T_INT, "0..1", NULL),
    RES(27, "Profile ID Hash Algorithm", RW, S, OPT, T_UINT, "0..255", NULL),
};

/* Object 2, Access Control v1.1. ACL instance ids are Short Server IDs. */
static const struct lw_m2m_res_def res2[] = {
    RES(0, "Object ID", R, S, MAND, T_INT, "1..65534", NULL),
    RES(1, "Object Instance ID", R, S, MAND, T_INT, "0..65535", NULL),
    RES(2, "ACL", RW, M, OPT, T_INT, "0..31", NULL),
    RES(3, "Access Control Owner", RW, S, MAND, T_INT, "0..65535", NULL),
};

/* Object 3, Device v1.2. */
static const struct lw_m2m_res_def res3[] = {
    RES(0, "Manufacturer", R, S, OPT, T_STR, NULL, NULL),
    RES(1, "Model Number", R, S, OPT, T_STR, NULL, NULL),
    RES(2, "Serial Number", R, S, OPT, T_STR, NULL, NULL),
    RES(3, "Firmware Version", R, S, OPT, T_STR, NULL, NULL),
    RES(4, "Reboot", E, S, MAND, T_EXE, NULL, NULL),
    RES(5, "Factory Reset", E, S, OPT, T_EXE, NULL, NULL),
    RES(6, "Available Power Sources", R, M, OPT, T_INT, "0..7", NULL),
    RES(7, "Power Source Voltage", R, M, OPT, T_INT, NULL, "mV"),
    RES(8, "Power Source Current", R, M, OPT, T_INT, NULL, "mA"),
    RES(9, "Battery Level", R, S, OPT, T_INT, "0..100", "/100"),
    RES(10, "Memory Free", R, S, OPT, T_INT, NULL, "KiBy"),
    RES(11, "Error Code", R, M, MAND, T_INT, "0..32", NULL),
    RES(12, "Reset Error Code", E, S, OPT, T_EXE, NULL, NULL),
    RES(13, "Current Time", RW, S, OPT, T_TIME, NULL, NULL),
    RES(14, "UTC Offset", RW, S, OPT, T_STR, NULL, NULL),
    RES(15, "Timezone", RW, S, OPT, T_STR, NULL, NULL),
    RES(16, "Supported Binding and Modes", R, S, MAND, T_STR, NULL, NULL),
    RES(17, "Device Type", R, S, OPT, T_STR, NULL, NULL),
    RES(18, "Hardware Version", R, S, OPT, T_STR, NULL, NULL),
    RES(19, "Software Version", R, S, OPT, T_STR, NULL, NULL),
    RES(20, "Battery Status", R, S, OPT, T_INT, "0..6", NULL),
    RES(21, "Memory Total", R, S, OPT, T_INT, NULL, "KiBy"),
    RES(22, "ExtDevInfo", R, M, OPT, T_LNK, NULL, NULL),
};

/* Object 4, Connectivity Monitoring v1.3. All resources are read-only. */
static const struct lw_m2m_res_def res4[] = {
    RES(0, "Network Bearer", R, S, MAND, T_INT, "0..50", NULL),
    RES(1, "Available Network Bearer", R, M, MAND, T_INT, "0..50", NULL),
    RES(2, "Radio Signal Strength", R, S, MAND, T_INT, NULL, "dBm"),
    RES(3, "Link Quality", R, S, OPT, T_INT, NULL, NULL),
    RES(4, "IP Addresses", R, M, MAND, T_STR, NULL, NULL),
    RES(5, "Router IP Addresses", R, M, OPT, T_STR, NULL, NULL),
    RES(6, "Link Utilization", R, S, OPT, T_INT, "0..100", "/100"),
    RES(7, "APN", R, M, OPT, T_STR, NULL, NULL),
    RES(8, "Cell ID", R, S, OPT, T_INT, NULL, NULL),
    RES(9, "SMNC", R, S, OPT, T_INT, "0..999", NULL),
    RES(10, "SMCC", R, S, OPT, T_INT, "0..999", NULL),
    RES(11, "SignalSNR", R, S, OPT, T_INT, NULL, "dB"),
    RES(12, "LAC", R, S, OPT, T_INT, NULL, NULL),
    RES(13, "Coverage Enhancement Level", R, S, OPT, T_INT, "0..4", NULL),
};

/* Object 5, Firmware Update v1.2. Resource 4 does not exist in any version. */
static const struct lw_m2m_res_def res5[] = {
    RES(0, "Package", W, S, MAND, T_OPQ, NULL, NULL),
    RES(1, "Package URI", RW, S, MAND, T_STR, "0..255", NULL),
    RES(2, "Update", E, S, MAND, T_EXE, NULL, NULL),
    RES(3, "State", R, S, MAND, T_INT, "0..3", NULL),
    RES(5, "Update Result", R, S, MAND, T_INT, "0..11", NULL),
    RES(6, "PkgName", R, S, OPT, T_STR, "0..255", NULL),
    RES(7, "PkgVersion", R, S, OPT, T_STR, "0..255", NULL),
    RES(8, "Firmware Update Protocol Support", R, M, OPT, T_INT, "0..5", NULL),
    RES(9, "Firmware Update Delivery Method", R, S, MAND, T_INT, "0..2", NULL),
    RES(10, "Cancel", E, S, OPT, T_EXE, NULL, NULL),
    RES(11, "Severity", RW, S, OPT, T_INT, "0..2", NULL),
    RES(12, "Last State Change Time", R, S, OPT, T_TIME, NULL, NULL),
    RES(13, "Maximum Defer Period", RW, S, OPT, T_UINT, NULL, "s"),
    RES(14, "Automatic Upgrade at Download", RW, S, OPT, T_BOOL, NULL, NULL),
};

/* Object 9, Software Management v1.0. */
static const struct lw_m2m_res_def res9[] = {
    RES(0, "PkgName", R, S, MAND, T_STR, "0..255 bytes", NULL),
    RES(1, "PkgVersion", R, S, MAND, T_STR, "0..255 bytes", NULL),
    RES(2, "Package", W, S, OPT, T_OPQ, NULL, NULL),
    RES(3, "Package URI", W, S, OPT, T_STR, "0..255 bytes", NULL),
    RES(4, "Install", E, S, MAND, T_EXE, NULL, NULL),
    RES(5, "Checkpoint", R, S, OPT, T_LNK, NULL, NULL),
    RES(6, "Uninstall", E, S, MAND, T_EXE, NULL, NULL),
    RES(7, "Update State", R, S, MAND, T_INT, "0..4", NULL),
    RES(8, "Update Supported Objects", RW, S, OPT, T_BOOL, NULL, NULL),
    RES(9, "Update Result", R, S, MAND, T_INT, "0..200", NULL),
    RES(10, "Activate", E, S, MAND, T_EXE, NULL, NULL),
    RES(11, "Deactivate", E, S, MAND, T_EXE, NULL, NULL),
    RES(12, "Activation State", R, S, MAND, T_BOOL, NULL, NULL),
    RES(13, "Package Settings", RW, S, OPT, T_LNK, NULL, NULL),
    RES(14, "User Name", W, S, OPT, T_STR, "0..255 bytes", NULL),
    RES(15, "Password", W, S, OPT, T_STR, "0..255 bytes", NULL),
    RES(16, "Status Reason", R, S, OPT, T_STR, NULL, NULL),
    RES(17, "Software Component Link", R, M, OPT, T_LNK, NULL, NULL),
    RES(18, "Software Component tree length", R, S, OPT, T_INT, "0..255", NULL),
};

/* Object 21, LwM2M OSCORE v2.0 (binary ids and secrets are Opaque since v2.0). Bootstrap only. */
static const struct lw_m2m_res_def res21[] = {
    RES(0, "OSCORE Master Secret", NOP, S, MAND, T_OPQ, NULL, NULL),
    RES(1, "OSCORE Sender ID", NOP, S, MAND, T_OPQ, NULL, NULL),
    RES(2, "OSCORE Recipient ID", NOP, S, MAND, T_OPQ, NULL, NULL),
    RES(3, "OSCORE AEAD Algorithm", NOP, S, OPT, T_INT, NULL, NULL),
    RES(4, "OSCORE HMAC Algorithm", NOP, S, OPT, T_INT, NULL, NULL),
    RES(5, "OSCORE Master Salt", NOP, S, OPT, T_OPQ, NULL, NULL),
    RES(6, "OSCORE ID Context", NOP, S, OPT, T_OPQ, NULL, NULL),
};

#define OBJ(i, vmaj, vmin, emaj, emin, mul, man, nm, u, r, n)                                  \
    {                                                                                          \
        .id = (i), .ver = {(vmaj), (vmin)}, .lwm2m = {(emaj), (emin)}, .multiple = (mul),      \
        .mandatory = (man), .builtin = true, .name = (nm), .urn = (u), .res = (r), .nres = (n) \
    }

static const struct lw_m2m_obj_def obj0_10 =
    OBJ(0, 1, 0, 1, 0, M, MAND, "LWM2M Security", "urn:oma:lwm2m:oma:0", res0, 13);
static const struct lw_m2m_obj_def obj0 = OBJ(0, 1, 2, 1, 1, M, MAND, "LWM2M Security",
                                              "urn:oma:lwm2m:oma:0:1.2", res0, LW_ARRAY_SIZE(res0));
static const struct lw_m2m_obj_def obj1_10 =
    OBJ(1, 1, 0, 1, 0, M, MAND, "LwM2M Server", "urn:oma:lwm2m:oma:1", res1, 9);
static const struct lw_m2m_obj_def obj1_11 =
    OBJ(1, 1, 1, 1, 1, M, MAND, "LwM2M Server", "urn:oma:lwm2m:oma:1:1.1", res1, 24);
static const struct lw_m2m_obj_def obj1 = OBJ(1, 1, 2, 1, 2, M, MAND, "LwM2M Server",
                                              "urn:oma:lwm2m:oma:1:1.2", res1, LW_ARRAY_SIZE(res1));
static const struct lw_m2m_obj_def obj2 = OBJ(2, 1, 1, 1, 0, M, OPT, "LwM2M Access Control",
                                              "urn:oma:lwm2m:oma:2:1.1", res2, LW_ARRAY_SIZE(res2));
static const struct lw_m2m_obj_def obj3 =
    OBJ(3, 1, 2, 1, 1, S, MAND, "Device", "urn:oma:lwm2m:oma:3:1.2", res3, LW_ARRAY_SIZE(res3));
static const struct lw_m2m_obj_def obj4 = OBJ(4, 1, 3, 1, 1, S, OPT, "Connectivity Monitoring",
                                              "urn:oma:lwm2m:oma:4:1.3", res4, LW_ARRAY_SIZE(res4));
static const struct lw_m2m_obj_def obj5 = OBJ(5, 1, 2, 1, 1, S, OPT, "Firmware Update",
                                              "urn:oma:lwm2m:oma:5:1.2", res5, LW_ARRAY_SIZE(res5));
static const struct lw_m2m_obj_def obj9 = OBJ(9, 1, 0, 1, 0, M, OPT, "LWM2M Software Management",
                                              "urn:oma:lwm2m:oma:9", res9, LW_ARRAY_SIZE(res9));
static const struct lw_m2m_obj_def obj21 =
    OBJ(21, 2, 0, 1, 1, M, OPT, "LWM2M OSCORE", "urn:oma:lwm2m:oma:21:2.0", res21,
        LW_ARRAY_SIZE(res21));

static const struct lw_m2m_obj_def *const core[] = {
    &obj0_10, &obj0, &obj1_10, &obj1_11, &obj1, &obj2, &obj3, &obj4, &obj5, &obj9, &obj21,
};

const struct lw_m2m_obj_def *const *lw_m2m_core_objects(size_t *n)
{
    *n = LW_ARRAY_SIZE(core);
    return core;
}
