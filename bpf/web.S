/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dmuser-exporter's live page (GET /), built into the binary: WEB_INDEX is
 * the path of dashboards/web/index.html (set by the Makefile).  Nothing is
 * fetched at run time.
 */
	.section .rodata
	.globl	dmu_exp_index_html
	.globl	dmu_exp_index_html_end
	.type	dmu_exp_index_html, @object
dmu_exp_index_html:
	.incbin	WEB_INDEX
dmu_exp_index_html_end:
	.byte	0
	.size	dmu_exp_index_html, . - dmu_exp_index_html

	.section .note.GNU-stack, "", @progbits
