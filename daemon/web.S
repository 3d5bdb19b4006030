/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The live page, built into the binary: WEB_INDEX is the path of
 * web/index.html (set by the Makefile).  Nothing is fetched at run time.
 */
	.section .rodata
	.globl	dmu_web_index_html
	.globl	dmu_web_index_html_end
	.type	dmu_web_index_html, @object
dmu_web_index_html:
	.incbin	WEB_INDEX
dmu_web_index_html_end:
	.byte	0
	.size	dmu_web_index_html, . - dmu_web_index_html

	.section .note.GNU-stack, "", @progbits
