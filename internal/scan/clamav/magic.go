package clamav

// magics are the fixed-offset magic numbers of libclamav's built-in file
// types (its filetypes_int.h, the offset-0 "type 0" lines that apply at
// our functionality level): a file whose head starts with one is typed by
// them and never as text, whatever its bytes. They are data, kept in the
// order and spelling of the original; the names are for the reader.
var magics = []struct {
	off int
	hex string
}{
	{0, "1f8b"},     // GZip
	{0, "23407e5e"}, // SCRENC
	{0, "28546869732066696c65206d75737420626520636f6e76657274656420776974682042696e48657820342e3029"}, // BinHex
	{0, "2e524d46"},                       // Real Media File
	{0, "3e46726f6d20"},                   // Mail
	{0, "424d"},                           // BMP
	{0, "425a68"},                         // BZip
	{0, "446174653a20"},                   // Mail
	{0, "44656c6976657265642d546f3a20"},   // Mail
	{0, "44656c69766572792d646174653a20"}, // Mail
	{0, "456e76656c6f70652d746f3a20"},     // Mail
	{0, "466f723a20"},                     // Eserv mail
	{0, "46726f6d20"},                     // MBox
	{0, "46726f6d3a20"},                   // Exim mail
	{0, "48692e20546869732069732074686520716d61696c2d73656e64"}, // Qmail bounce
	{0, "494433"},                             // MP3
	{0, "49545346"},                           // MS CHM
	{0, "4d5a"},                               // MS-EXE/DLL
	{0, "4d6573736167652d49443a20"},           // Mail
	{0, "4d6573736167652d49643a20"},           // Mail
	{0, "4f676753"},                           // Ogg Stream
	{0, "504b0304"},                           // ZIP
	{0, "504b3030504b0304"},                   // ZIP
	{0, "52494646"},                           // RIFF
	{0, "52494658"},                           // RIFX
	{0, "52617221"},                           // RAR
	{0, "52656365697665643a20"},               // Raw mail
	{0, "52657475726e2d506174683a20"},         // Maildir
	{0, "52657475726e2d706174683a20"},         // Maildir
	{0, "535a4444"},                           // compress.exed
	{0, "5375626a6563743a20"},                 // Mail
	{0, "546f3a20"},                           // Mail
	{0, "582d4170706172656e746c792d546f3a20"}, // Mail
	{0, "582d455653"},                         // EVS mail
	{0, "582d456e76656c6f70652d46726f6d3a20"}, // Mail
	{0, "582d4f726967696e616c2d546f3a20"},     // Mail
	{0, "582d5265616c2d546f3a20"},             // Mail
	{0, "582d53696576653a20"},                 // Mail
	{0, "582d53796d616e7465632d"},             // Symantec
	{0, "582d5549444c3a20"},                   // Mail
	{0, "60ea"},                               // ARJ
	{0, "626567696e20"},                       // UUencoded
	{0, "763a0a52656365697665643a20"},         // VPOP3 Mail (UNIX)
	{0, "763a0d0a52656365697665643a20"},       // VPOP3 Mail (DOS)
	{0, "789f3e22"},                           // TNEF
	{0, "7f454c46"},                           // ELF
	{0, "b6b9acaefeffffff"},                   // CryptFF
	{0, "d0cf11e0a1b11ae1"},                   // OLE2 container
	{0, "fffb90"},                             // MP3
	{0, "5349502d48495420285349502f48"},       // SIP log
	{257, "7573746172"},                       // TAR-POSIX
	{0, "5b616c69617365735d"},                 // mirc ini
	{0, "cefaedfe"},                           // Mach-O LE
	{0, "cffaedfe"},                           // Mach-O LE 64-bit
	{0, "feedface"},                           // Mach-O BE
	{0, "feedfacf"},                           // Mach-O BE 64-bit
	{0, "377abcaf271c"},                       // 7zip
	{0, "52656365697665642d5350463a20"},       // Mail file
	{0, "303730373031"},                       // CPIO NEWC
	{0, "303730373032"},                       // CPIO CRC
	{0, "303730373037"},                       // CPIO ODC
	{0, "71c7"},                               // CPIO OLD BINARY BE
	{0, "c771"},                               // CPIO OLD BINARY LE
	{0, "255044462d"},                         // PDF document
	{0, "53594d430100"},                       // SYM DATFILE
	{0, "377f0682002de218"},                   // SQLite WAL
	{0, "377f0683002de218"},                   // SQLite WAL
	{0, "53514c69746520666f726d6174203300"},   // SQLite database
	{0, "d9d505f920a163d7"},                   // SQLite journal
	{0, "465753"},                             // SWF (uncompressed)
	{0, "4d53434600000000"},                   // MS CAB
	{0, "5b616c69617365735d"},                 // TAR-POSIX-CVE-2012-1419
	{0, "0000000c6a5020200d0a870a"},           // JPEG2000
	{0, "000001b3"},                           // MPEG video stream
	{0, "000001ba"},                           // MPEG sys stream
	{0, "78617221"},                           // XAR container file
	{0, "fd377a585a00"},                       // XZ container file
	{512, "4546492050415254"},                 // Disk Image - GUID Partition Table
	{4, "d0cf11e0a1b11ae1"},                   // HWP embedded OLE2
	{0, "48575020446f63756d656e742046696c652056332e3030201a0102030405"}, // HWP3 Document
	{0, "7b5c7274"},                                 // RTF
	{0, "252150532d41646f62652d"},                   // PostScript
	{0, "4c0000000114020000000000c000000000000046"}, // Microsoft Windows Shortcut File
	{0, "435753"},                                   // SWF (zlib compressed)
	{0, "45474741"},                                 // Egg Archive
	{0, "89504e47"},                                 // PNG
	{0, "474946"},                                   // GIF
	{0, "ffd8ff"},                                   // JPEG
	{0, "49492a00"},                                 // TIFF Little Endian
	{0, "4d4d"},                                     // TIFF Big Endian
	{0, "7b0a2020224d61676963223a22434c414d4a534f4e763022"}, // Internal properties
	{0, "5a5753"},                           // SWF (LZMA compressed)
	{0, "e4525c7b8cd8a74daeb15378d02996d3"}, // Microsoft OneNote Document
	{0, "02099900"},                         // Python 1.0 byte-compiled (.pyc)
	{0, "03099900"},                         // Python 1.1/1.2 byte-compiled (.pyc)
	{0, "892e0d0a"},                         // Python 1.3 byte-compiled (.pyc)
	{0, "04170d0a"},                         // Python 1.4 byte-compiled (.pyc)
	{0, "994e0d0a"},                         // Python 1.5 byte-compiled (.pyc)
	{0, "fcc40d0a"},                         // Python 1.6 byte-compiled (.pyc)
	{0, "fdc40d0a"},                         // Python 1.6 byte-compiled (.pyc)
	{0, "87c60d0a"},                         // Python 2.0 byte-compiled (.pyc)
	{0, "88c60d0a"},                         // Python 2.0 byte-compiled (.pyc)
	{0, "2aeb0d0a"},                         // Python 2.1 byte-compiled (.pyc)
	{0, "2beb0d0a"},                         // Python 2.1 byte-compiled (.pyc)
	{0, "2ded0d0a"},                         // Python 2.2 byte-compiled (.pyc)
	{0, "2eed0d0a"},                         // Python 2.2 byte-compiled (.pyc)
	{0, "3bf20d0a"},                         // Python 2.3 byte-compiled (.pyc)
	{0, "3cf20d0a"},                         // Python 2.3 byte-compiled (.pyc)
	{0, "45f20d0a"},                         // Python 2.3 byte-compiled (.pyc)
	{0, "59f20d0a"},                         // Python 2.4 byte-compiled (.pyc)
	{0, "63f20d0a"},                         // Python 2.4 byte-compiled (.pyc)
	{0, "6df20d0a"},                         // Python 2.4 byte-compiled (.pyc)
	{0, "6ef20d0a"},                         // Python 2.4 byte-compiled (.pyc)
	{0, "77f20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "81f20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "8bf20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "8cf20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "95f20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "9ff20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "a9f20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "b3f20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "b4f20d0a"},                         // Python 2.5 byte-compiled (.pyc)
	{0, "c7f20d0a"},                         // Python 2.6 byte-compiled (.pyc)
	{0, "d1f20d0a"},                         // Python 2.6 byte-compiled (.pyc)
	{0, "d2f20d0a"},                         // Python 2.6 byte-compiled (.pyc)
	{0, "dbf20d0a"},                         // Python 2.7 byte-compiled (.pyc)
	{0, "e5f20d0a"},                         // Python 2.7 byte-compiled (.pyc)
	{0, "eff20d0a"},                         // Python 2.7 byte-compiled (.pyc)
	{0, "f9f20d0a"},                         // Python 2.7 byte-compiled (.pyc)
	{0, "03f30d0a"},                         // Python 2.7 byte-compiled (.pyc)
	{0, "04f30d0a"},                         // Python 2.7 byte-compiled (.pyc)
	{0, "0af30d0a"},                         // PyPy 2.7 byte-compiled (.pyc)
	{0, "b80b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "c20b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "cc0b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "d60b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "e00b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "ea0b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "f40b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "f50b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "ff0b0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "090c0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "130c0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "1d0c0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "1f0c0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "270c0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "3b0c0d0a"},                         // Python 3.0 byte-compiled (.pyc)
	{0, "450c0d0a"},                         // Python 3.1 byte-compiled (.pyc)
	{0, "4f0c0d0a"},                         // Python 3.1 byte-compiled (.pyc)
	{0, "580c0d0a"},                         // Python 3.2 byte-compiled (.pyc)
	{0, "620c0d0a"},                         // Python 3.2 byte-compiled (.pyc)
	{0, "6c0c0d0a"},                         // Python 3.2 byte-compiled (.pyc)
	{0, "760c0d0a"},                         // Python 3.3 byte-compiled (.pyc)
	{0, "800c0d0a"},                         // Python 3.3 byte-compiled (.pyc)
	{0, "8a0c0d0a"},                         // Python 3.3 byte-compiled (.pyc)
	{0, "940c0d0a"},                         // Python 3.3 byte-compiled (.pyc)
	{0, "9e0c0d0a"},                         // Python 3.3 byte-compiled (.pyc)
	{0, "b20c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "bc0c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "c60c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "d00c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "da0c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "e40c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "ee0c0d0a"},                         // Python 3.4 byte-compiled (.pyc)
	{0, "f80c0d0a"},                         // Python 3.5.1- byte-compiled (.pyc)
	{0, "020d0d0a"},                         // Python 3.5.1- byte-compiled (.pyc)
	{0, "0c0d0d0a"},                         // Python 3.5.1- byte-compiled (.pyc)
	{0, "160d0d0a"},                         // Python 3.5.1- byte-compiled (.pyc)
	{0, "170d0d0a"},                         // Python 3.5.2+ byte-compiled (.pyc)
	{0, "200d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "210d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "2a0d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "2b0d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "2c0d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "2d0d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "2f0d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "300d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "310d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "320d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "330d0d0a"},                         // Python 3.6 byte-compiled (.pyc)
	{0, "3e0d0d0a"},                         // Python 3.7 byte-compiled (.pyc)
	{0, "3f0d0d0a"},                         // Python 3.7 byte-compiled (.pyc)
	{0, "f00d0d0a"},                         // PyPy 3.7 byte-compiled (.pyc)
	{0, "00010d0a"},                         // PyPy 3.8 byte-compiled (.pyc)
	{0, "50010d0a"},                         // PyPy 3.9 byte-compiled (.pyc)
	{0, "414c5a01"},                         // ALZ
}
