/* quant/tables.c: the fixed tables of the bitsandbytes formats, written as
 * hexadecimal float literals of the exact float32 bits listed in
 * specs/bnb-format.md (the bits are in the comments). Never recomputed. */
#include "quant/quant.h"

/* §1.1 NF4 quant_map; sha256 of the 64 LE bytes
 * 8501941daa1b8a90ad1bbfeb632e5101b5dddbc4bb52d6e55abcfd777e60c06a. */
const float qt_nf4_map[16] = {
    -0x1p+0f, -0x1.647362p-1f, -0x1.0cd66p-1f, -0x1.94654p-2f, /* 0: BF800000 BF3239B1 BF066B30 BECA32A0 */
    -0x1.23449ap-2f, -0x1.7a6a7ep-3f, -0x1.74f0e2p-4f, 0x0p+0f, /* 4: BE91A24D BE3D353F BDBA7871 00000000 */
    0x1.45f5fep-4f, 0x1.4995c6p-3f, 0x1.f809bap-3f, 0x1.5a0674p-2f, /* 8: 3DA2FAFF 3E24CAE3 3E7C04DD 3EAD033A */
    0x1.c3497p-2f, 0x1.200f56p-1f, 0x1.722766p-1f, 0x1p+0f, /* 12: 3EE1A4B8 3F1007AB 3F3913B3 3F800000 */
};

/* §1.4 NF4 thresholds f32((c[i] + c[i+1]) / 2); code = #{t : xn > t}. */
const float qt_nf4_thresholds[15] = {
    -0x1.b239bp-1f, -0x1.38a4ep-1f, -0x1.d709p-2f, -0x1.5bd4ecp-2f, /* 0: BF591CD8 BF1C5270 BEEB8480 BEADEA76 */
    -0x1.e079d8p-3f, -0x1.1a7178p-3f, -0x1.74f0e2p-5f, 0x1.45f5fep-5f, /* 4: BE703CEC BE0D38BC BD3A7871 3D22FAFF */
    0x1.ec90c4p-4f, 0x1.a0cfcp-3f, 0x1.2b05a8p-2f, 0x1.8ea7f2p-2f, /* 8: 3DF64862 3E5067E0 3E9582D4 3EC753F9 */
    0x1.00da08p-1f, 0x1.491b5ep-1f, 0x1.b913b4p-1f, /* 12: 3F006D04 3F248DAF 3F5C89DA */
};

/* §1.2 FP4 quant_map = f32(v / 12); entry 8 is +0.0. */
const float qt_fp4_map[16] = {
    0x0p+0f, 0x1.555556p-8f, 0x1.555556p-1f, 0x1p+0f, /* 0: 00000000 3BAAAAAB 3F2AAAAB 3F800000 */
    0x1.555556p-2f, 0x1p-1f, 0x1.555556p-3f, 0x1p-2f, /* 4: 3EAAAAAB 3F000000 3E2AAAAB 3E800000 */
    0x0p+0f, -0x1.555556p-8f, -0x1.555556p-1f, -0x1p+0f, /* 8: 00000000 BBAAAAAB BF2AAAAB BF800000 */
    -0x1.555556p-2f, -0x1p-1f, -0x1.555556p-3f, -0x1p-2f, /* 12: BEAAAAAB BF000000 BE2AAAAB BE800000 */
};

/* §1.5 FP4 tree constants in ascending order: G, E, F, A, D, B, C. */
const float qt_fp4_thresholds[7] = {
    0x1.555572p-9f, 0x1.6p-4f, 0x1.aaaaaap-3f, 0x1.2aaaaap-2f, /* 0: 3B2AAAB9 3DB00000 3E555555 3E955555 */
    0x1.aaaaacp-2f, 0x1.2aaaap-1f, 0x1.aaaaaap-1f, /* 4: 3ED55556 3F155550 3F555555 */
};

/* §2.2 canonical signed dynamic map (table "B"); sha256 of the 1024 LE bytes
 * e732639a65f497b4ad684bb166a4467708255edd5207757de8b8f0c7e1fda89c. */
const float qt_dynamic_map[256] = {
    -0x1.fc6666p-1f, -0x1.f53334p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f, /* 0: BF7E3333 BF7A999A BF770000 BF736666 */
    -0x1.df999ap-1f, -0x1.d86666p-1f, -0x1.d13334p-1f, -0x1.cap-1f, /* 4: BF6FCCCD BF6C3333 BF68999A BF650000 */
    -0x1.c2ccccp-1f, -0x1.bb999ap-1f, -0x1.b46666p-1f, -0x1.ad3334p-1f, /* 8: BF616666 BF5DCCCD BF5A3333 BF56999A */
    -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.97999ap-1f, -0x1.906666p-1f, /* 12: BF530000 BF4F6666 BF4BCCCD BF483333 */
    -0x1.893334p-1f, -0x1.82p-1f, -0x1.7accccp-1f, -0x1.73999ap-1f, /* 16: BF44999A BF410000 BF3D6666 BF39CCCD */
    -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56ccccp-1f, /* 20: BF363334 BF32999A BF2F0000 BF2B6666 */
    -0x1.4f999ap-1f, -0x1.486668p-1f, -0x1.413334p-1f, -0x1.3ap-1f, /* 24: BF27CCCD BF243334 BF20999A BF1D0000 */
    -0x1.32ccccp-1f, -0x1.2b999ap-1f, -0x1.246668p-1f, -0x1.1d3334p-1f, /* 28: BF196666 BF15CCCD BF123334 BF0E999A */
    -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.079998p-1f, -0x1.006666p-1f, /* 32: BF0B0000 BF076666 BF03CCCC BF003333 */
    -0x1.f26664p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f, /* 36: BEF93332 BEF20000 BEEACCCC BEE3999A */
    -0x1.b8ccccp-2f, -0x1.aa6666p-2f, -0x1.9cp-2f, -0x1.8d9998p-2f, /* 40: BEDC6666 BED53333 BECE0000 BEC6CCCC */
    -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626666p-2f, -0x1.54p-2f, /* 44: BEBF999A BEB86666 BEB13333 BEAA0000 */
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f, /* 48: BEA2CCCC BE9B999A BE946666 BE8D3334 */
    -0x1.0cp-2f, -0x1.fb3332p-3f, -0x1.de6666p-3f, -0x1.c1999ap-3f, /* 52: BE860000 BE7D9999 BE6F3333 BE60CCCD */
    -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3334p-3f, -0x1.4e6666p-3f, /* 56: BE526666 BE440000 BE35999A BE273333 */
    -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f, /* 60: BE18CCCD BE0A6666 BDF80000 BDDB3334 */
    -0x1.93d70ap-4f, -0x1.8851eep-4f, -0x1.7ccccep-4f, -0x1.7147aep-4f, /* 64: BDC9EB85 BDC428F7 BDBE6667 BDB8A3D7 */
    -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb854p-4f, -0x1.433334p-4f, /* 68: BDB2E148 BDAD1EB8 BDA75C2A BDA1999A */
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f, /* 72: BD9BD70A BD96147B BD9051EB BD8A8F5D */
    -0x1.09999ap-4f, -0x1.fc28f6p-5f, -0x1.e51ebap-5f, -0x1.ce147ap-5f, /* 76: BD84CCCD BD7E147B BD728F5D BD670A3D */
    -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f, /* 80: BD5B851F BD500000 BD447AE1 BD38F5C3 */
    -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c29p-5f, /* 84: BD2D70A3 BD21EB85 BD166667 BD0AE148 */
    -0x1.fd70a4p-6f, -0x1.cf5c2ap-6f, -0x1.a147aep-6f, -0x1.733334p-6f, /* 88: BCFEB852 BCE7AE15 BCD0A3D7 BCB9999A */
    -0x1.451ebap-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f, /* 92: BCA28F5D BC8B851F BC68F5C3 BC3AE148 */
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f, /* 96: BC1F3B64 BC160418 BC0CCCCD BC039581 */
    -0x1.e978d4p-8f, -0x1.c49ba6p-8f, -0x1.9fbe76p-8f, -0x1.7ae148p-8f, /* 100: BBF4BC6A BBE24DD3 BBCFDF3B BBBD70A4 */
    -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f, /* 104: BBAB020D BB989374 BB8624DD BB676C8A */
    -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f, /* 108: BB428F5C BB1DB22D BAF1A9FC BAA7EF9D */
    -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f, -0x1.3dd982p-11f, /* 112: BA7765FF BA59E83E BA3C6A80 BA1EECC1 */
    -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f, /* 116: BA016F01 B9C7E283 B98CE705 B923D70B */
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, /* 120: B8BA1F4B B88AEFB3 B8378034 B7B24206 */
    -0x1.040bfep-17f, -0x1.b43528p-19f, -0x1.27476ep-21f, 0x0p+0f, /* 124: B70205FF B65A1A94 B513A3B7 00000000 */
    0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f, /* 128: 3513A3B7 365A1A94 370205FF 37B24206 */
    0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f, /* 132: 38378034 388AEFB3 38BA1F4B 3923D70B */
    0x1.19ce0ap-12f, 0x1.8fc506p-12f, 0x1.02de02p-11f, 0x1.3dd982p-11f, /* 136: 398CE705 39C7E283 3A016F01 3A1EECC1 */
    0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f, /* 140: 3A3C6A80 3A59E83E 3A7765FF 3AA7EF9D */
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f, /* 144: 3AF1A9FC 3B1DB22D 3B428F5C 3B676C8A */
    0x1.0c49bap-8f, 0x1.3126e8p-8f, 0x1.56041ap-8f, 0x1.7ae148p-8f, /* 148: 3B8624DD 3B989374 3BAB020D 3BBD70A4 */
    0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f, /* 152: 3BCFDF3B 3BE24DD3 3BF4BC6A 3C039581 */
    0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f, /* 156: 3C0CCCCD 3C160418 3C1F3B64 3C3AE148 */
    0x1.d1eb86p-7f, 0x1.170a3ep-6f, 0x1.451ebap-6f, 0x1.733334p-6f, /* 160: 3C68F5C3 3C8B851F 3CA28F5D 3CB9999A */
    0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f, /* 164: 3CD0A3D7 3CE7AE15 3CFEB852 3D0AE148 */
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f, /* 168: 3D166667 3D21EB85 3D2D70A3 3D38F5C3 */
    0x1.88f5c2p-5f, 0x1.ap-5f, 0x1.b70a3ep-5f, 0x1.ce147ap-5f, /* 172: 3D447AE1 3D500000 3D5B851F 3D670A3D */
    0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f, /* 176: 3D728F5D 3D7E147B 3D84CCCD 3D8A8F5D */
    0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f, /* 180: 3D9051EB 3D96147B 3D9BD70A 3DA1999A */
    0x1.4eb854p-4f, 0x1.5a3d7p-4f, 0x1.65c29p-4f, 0x1.7147aep-4f, /* 184: 3DA75C2A 3DAD1EB8 3DB2E148 3DB8A3D7 */
    0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f, /* 188: 3DBE6667 3DC428F7 3DC9EB85 3DDB3334 */
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f, /* 192: 3DF80000 3E0A6666 3E18CCCD 3E273333 */
    0x1.6b3334p-3f, 0x1.88p-3f, 0x1.a4ccccp-3f, 0x1.c1999ap-3f, /* 196: 3E35999A 3E440000 3E526666 3E60CCCD */
    0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f, /* 200: 3E6F3333 3E7D9999 3E860000 3E8D3334 */
    0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f, /* 204: 3E946666 3E9B999A 3EA2CCCC 3EAA0000 */
    0x1.626666p-2f, 0x1.70ccccp-2f, 0x1.7f3334p-2f, 0x1.8d9998p-2f, /* 208: 3EB13333 3EB86666 3EBF999A 3EC6CCCC */
    0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f, /* 212: 3ECE0000 3ED53333 3EDC6666 3EE3999A */
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26664p-2f, 0x1.006666p-1f, /* 216: 3EEACCCC 3EF20000 3EF93332 3F003333 */
    0x1.079998p-1f, 0x1.0eccccp-1f, 0x1.16p-1f, 0x1.1d3334p-1f, /* 220: 3F03CCCC 3F076666 3F0B0000 3F0E999A */
    0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f, /* 224: 3F123334 3F15CCCD 3F196666 3F1D0000 */
    0x1.413334p-1f, 0x1.486668p-1f, 0x1.4f999ap-1f, 0x1.56ccccp-1f, /* 228: 3F20999A 3F243334 3F27CCCD 3F2B6666 */
    0x1.5ep-1f, 0x1.653334p-1f, 0x1.6c6668p-1f, 0x1.73999ap-1f, /* 232: 3F2F0000 3F32999A 3F363334 3F39CCCD */
    0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f, /* 236: 3F3D6666 3F410000 3F44999A 3F483333 */
    0x1.97999ap-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3334p-1f, /* 240: 3F4BCCCD 3F4F6666 3F530000 3F56999A */
    0x1.b46666p-1f, 0x1.bb999ap-1f, 0x1.c2ccccp-1f, 0x1.cap-1f, /* 244: 3F5A3333 3F5DCCCD 3F616666 3F650000 */
    0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f, /* 248: 3F68999A 3F6C3333 3F6FCCCD 3F736666 */
    0x1.eep-1f, 0x1.f53334p-1f, 0x1.fc6666p-1f, 0x1p+0f, /* 252: 3F770000 3F7A999A 3F7E3333 3F800000 */
};
